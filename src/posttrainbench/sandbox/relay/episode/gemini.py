"""The episode in the Gemini API, as Gemini CLI calls it.

Gemini CLI's agent loop posts `/v1beta/models/<model>:streamGenerateContent?alt=sse` with its tools
under `tools[].functionDeclarations` (the shell tool is `run_shell_command`, arguments
`{"command", "description", ...}`); tool results come back as `functionResponse` parts of a user
turn. Its utility calls (next-speaker check, loop detection, model routing, edit correction) go
to `:generateContent` with `generationConfig.responseJsonSchema` and expect JSON text matching it;
summaries and chat compression expect plain text; `:countTokens` expects `totalTokens`. All of
them are outside the loop.

Usage is reported the way the API does: `promptTokenCount` includes `cachedContentTokenCount`,
and the output is split into `candidatesTokenCount` and `thoughtsTokenCount` (for a turn that
thought), which the relay's meter adds back up, so it reads the `Tokens` given unchanged.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from posttrainbench.sandbox.relay.episode import EpisodeWire, Shell, Step, Tokens
from posttrainbench.sandbox.relay.fake import SSE, Reply, Seen

SHELL_TOOLS = ("run_shell_command", "shell")
DEFAULT_MODEL = "gemini-3.1-pro-preview"
SIDE_TEXT = "Post-training run"
_ACTION = re.compile(r"/models/(?P<model>[^/:]+):(?P<action>\w+)$")


def _action(seen: Seen) -> tuple[str, str]:
    """The model and the method (`generateContent`, `streamGenerateContent`, `countTokens`)."""
    m = _ACTION.search(urlsplit(seen.path).path)
    return (m["model"], m["action"]) if m else (DEFAULT_MODEL, "")


def _declarations(request: Any) -> list[dict[str, Any]]:
    tools = request.get("tools") if isinstance(request, dict) else None
    return [
        decl
        for tool in tools or []
        if isinstance(tool, dict)
        for decl in tool.get("functionDeclarations") or []
        if isinstance(decl, dict)
    ]


def shell_tool(request: Any) -> str | None:
    """The name of the request's shell tool, or None if it offers none."""
    names = {d.get("name") for d in _declarations(request)}
    return next((n for n in SHELL_TOOLS if n in names), None)


def _config(request: Any) -> dict[str, Any]:
    config = request.get("generationConfig") if isinstance(request, dict) else None
    return config if isinstance(config, dict) else {}


def _parts(content: Any) -> list[dict[str, Any]]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p for p in parts or [] if isinstance(p, dict)]


def example(schema: Any) -> Any:
    """A small value that satisfies a JSON schema (the first of an enum, zero, empty)."""
    if not isinstance(schema, dict):
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example(schema[key][0])
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
    kind = kind.lower() if isinstance(kind, str) else kind
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {name: example(sub) for name, sub in props.items()}
    if kind == "array":
        return []
    if kind in ("number", "integer"):
        return 0
    if kind == "boolean":
        return False
    return SIDE_TEXT


def _usage(tokens: Tokens, thinking: bool) -> dict[str, int]:
    """A turn that thought reports a quarter of its output as thinking, as the API splits it."""
    thoughts = tokens.output_tokens // 4 if thinking else 0
    return {
        "promptTokenCount": tokens.input_tokens,
        "candidatesTokenCount": tokens.output_tokens - thoughts,
        "cachedContentTokenCount": tokens.cached_tokens,
        "thoughtsTokenCount": thoughts,
        "totalTokenCount": tokens.input_tokens + tokens.output_tokens,
    }


def _chunk(parts: list[dict[str, Any]], model: str, response_id: str) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "index": 0}],
        "modelVersion": model,
        "responseId": response_id,
    }


def content_reply(
    parts: list[dict[str, Any]], tokens: Tokens, seen: Seen, response_id: str
) -> Reply:
    """`parts` as the API answers `seen`: SSE chunks (the last with the finish reason and the
    totals), a JSON array of chunks (streamed without `alt=sse`), or one JSON object."""
    model, action = _action(seen)
    usage = _usage(tokens, any(p.get("thought") for p in parts))
    if action != "streamGenerateContent":
        whole = _chunk(parts, model, response_id)
        whole["candidates"][0]["finishReason"] = "STOP"
        whole["usageMetadata"] = usage
        return Reply(chunks=[json.dumps(whole).encode()], chunked=False)
    chunks = [_chunk([part], model, response_id) for part in parts or [{"text": ""}]]
    for chunk in chunks[:-1]:
        chunk["usageMetadata"] = {"promptTokenCount": tokens.input_tokens}
    chunks[-1]["candidates"][0]["finishReason"] = "STOP"
    chunks[-1]["usageMetadata"] = usage
    if "alt=sse" not in urlsplit(seen.path).query:
        return Reply(chunks=[json.dumps(chunks).encode()], chunked=False)
    events = [f"data: {json.dumps(c)}\r\n\r\n".encode() for c in chunks]
    return Reply(chunks=events, content_type=SSE)


class GeminiEpisode(EpisodeWire):
    """Gemini CLI's side of the episode: its `run_shell_command` tool runs each `Shell` step."""

    def progress(self, seen: Seen, request: Any) -> int | None:
        """Steps already taken: tool results (once per call id: a resumed session repeats them),
        plus finished turns (a model turn with text and no function call) so that a resumed
        conversation goes on to the next step."""
        _, action = _action(seen)
        if action not in ("generateContent", "streamGenerateContent"):
            return None
        if "responseJsonSchema" in _config(request) or "responseSchema" in _config(request):
            return None
        if shell_tool(request) is None:
            return None
        done, answered = 0, set()
        for content in request.get("contents") or []:
            parts = _parts(content)
            role = content.get("role") if isinstance(content, dict) else None
            if role == "user":
                for part in parts:
                    response = part.get("functionResponse")
                    call_id = response.get("id") if isinstance(response, dict) else None
                    if response is not None and (call_id is None or call_id not in answered):
                        done += 1
                        answered.add(call_id)
            elif role == "model":
                calls = any("functionCall" in p for p in parts)
                said = any(p.get("text") and not p.get("thought") for p in parts)
                done += int(said and not calls)
        return done

    def reply(self, step: Step, call_id: str, tokens: Tokens, seen: Seen, request: Any) -> Reply:
        parts: list[dict[str, Any]]
        if isinstance(step, Shell):
            args = {"command": step.command, "description": step.description}
            parts = [
                {"text": f"Next: {step.description}.", "thought": True},
                {"text": f"I will {step.description}."},
                {"functionCall": {"name": shell_tool(request) or SHELL_TOOLS[0], "args": args}},
            ]
        else:
            parts = [{"text": step.text}]
        return content_reply(parts, tokens, seen, f"resp_{call_id}")

    def side_reply(self, tokens: Tokens, seen: Seen, request: Any) -> Reply:
        _, action = _action(seen)
        if action == "countTokens":
            body = {"totalTokens": tokens.input_tokens}
            return Reply(chunks=[json.dumps(body).encode()], chunked=False)
        config = _config(request)
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        if schema is not None:
            text = json.dumps(example(schema))
        elif config.get("responseMimeType") == "application/json":
            text = "{}"
        else:
            text = SIDE_TEXT
        return content_reply([{"text": text}], tokens, seen, "resp_side")
