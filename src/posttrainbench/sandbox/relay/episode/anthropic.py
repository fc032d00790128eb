"""The episode in the Anthropic Messages API, as Claude Code calls it.

Claude Code's agent loop posts `/v1/messages?beta=true` with its tools (the shell tool is `Bash`,
input `{"command", "description"}`) and `stream: true`; it retries a failed stream without
streaming, so both shapes are answered. Its other calls (token counting, and small requests
without tools such as titles or quota checks) are outside the loop.

Usage is split the way the API reports it: `input_tokens` excludes the cache read, which goes in
`cache_read_input_tokens`, so the relay's meter adds them back to the `Tokens` given.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from posttrainbench.sandbox.relay.episode import EpisodeWire, Shell, Step, Tokens
from posttrainbench.sandbox.relay.fake import SSE, Reply, Seen, sse_event

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
SHELL_TOOLS = ("Bash", "bash")
DEFAULT_MODEL = "claude-sonnet-4-6"
SIDE_TEXT = "Post-training run"


def _blocks(message: Any) -> list[Any]:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, list) else []


def shell_tool(request: Any) -> str | None:
    """The name of the request's shell tool, or None if it offers none."""
    tools = request.get("tools") if isinstance(request, dict) else None
    names = [t.get("name") for t in tools or [] if isinstance(t, dict)]
    return next((n for n in SHELL_TOOLS if n in names), None)


def _usage(tokens: Tokens, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": tokens.input_tokens - tokens.cached_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": tokens.cached_tokens,
        "output_tokens": output_tokens,
    }


def _message(
    content: list[dict[str, Any]], stop_reason: str, tokens: Tokens, model: str, msg_id: str
) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": _usage(tokens, tokens.output_tokens),
    }


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    kind = block["type"]
    start: dict[str, Any]
    if kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": block["text"]}]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": block["thinking"]},
            {"type": "signature_delta", "signature": block["signature"]},
        ]
    else:  # tool_use: the input arrives as JSON text, cut in two to exercise reassembly
        start = {**block, "input": {}}
        text = json.dumps(block["input"])
        half = len(text) // 2
        deltas = [
            {"type": "input_json_delta", "partial_json": part}
            for part in (text[:half], text[half:])
        ]
    opening = {"type": "content_block_start", "index": index, "content_block": start}
    events = [sse_event(opening, "content_block_start")]
    events += [
        sse_event(
            {"type": "content_block_delta", "index": index, "delta": d}, "content_block_delta"
        )
        for d in deltas
    ]
    events.append(sse_event({"type": "content_block_stop", "index": index}, "content_block_stop"))
    return events


def message_reply(message: dict[str, Any], stream: bool) -> Reply:
    """`message` as the API sends it: one JSON body, or the SSE events that build it."""
    if not stream:
        return Reply(chunks=[json.dumps(message).encode()], chunked=False)
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    chunks = [sse_event({"type": "message_start", "message": start}, "message_start")]
    for index, block in enumerate(message["content"]):
        chunks += _block_events(index, block)
    delta = {
        "type": "message_delta",
        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
        "usage": usage,
    }
    chunks.append(sse_event(delta, "message_delta"))
    chunks.append(sse_event({"type": "message_stop"}, "message_stop"))
    return Reply(chunks=chunks, content_type=SSE)


class AnthropicEpisode(EpisodeWire):
    """Claude Code's side of the episode: its `Bash` tool runs each `Shell` step."""

    def progress(self, seen: Seen, request: Any) -> int | None:
        """Steps already taken: tool results, plus finished turns (an assistant message without a
        tool call) so that a continued conversation goes on to the next step."""
        if urlsplit(seen.path).path != MESSAGES or shell_tool(request) is None:
            return None
        done = 0
        for message in request.get("messages") or []:
            blocks = _blocks(message)
            kinds = {b.get("type") for b in blocks if isinstance(b, dict)}
            role = message.get("role") if isinstance(message, dict) else None
            if role == "user":
                done += sum(
                    1 for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"
                )
            elif role == "assistant" and "tool_use" not in kinds and "text" in kinds:
                done += 1
        return done

    def reply(self, step: Step, call_id: str, tokens: Tokens, seen: Seen, request: Any) -> Reply:
        model = str(request.get("model") or DEFAULT_MODEL)
        content: list[dict[str, Any]]
        if isinstance(step, Shell):
            content = [
                {"type": "thinking", "thinking": f"Next: {step.description}.",
                 "signature": f"sig-{call_id}"},
                {"type": "text", "text": f"I will {step.description}."},
                {"type": "tool_use", "id": call_id, "name": shell_tool(request) or "Bash",
                 "input": {"command": step.command, "description": step.description}},
            ]  # fmt: skip
            stop = "tool_use"
        else:
            content, stop = [{"type": "text", "text": step.text}], "end_turn"
        message = _message(content, stop, tokens, model, f"msg_{call_id}")
        return message_reply(message, request.get("stream") is True)

    def side_reply(self, tokens: Tokens, seen: Seen, request: Any) -> Reply:
        if urlsplit(seen.path).path == COUNT_TOKENS:
            body = {"input_tokens": tokens.input_tokens}
            return Reply(chunks=[json.dumps(body).encode()], chunked=False)
        model = str(request.get("model") or DEFAULT_MODEL)
        content = [{"type": "text", "text": SIDE_TEXT}]
        message = _message(content, "end_turn", tokens, model, "msg_side")
        return message_reply(message, request.get("stream") is True)
