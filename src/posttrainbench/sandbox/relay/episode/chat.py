"""The episode in the OpenAI Chat Completions API, as OpenCode (and any client of an
OpenAI-compatible endpoint) calls it.

The agent loop posts `/v1/chat/completions` with `tools` (OpenCode's shell tool is `bash`, with
`command` required and optional `timeout`, `workdir`, `description` by version) and
`stream: true` with `stream_options.include_usage`. Calls without tools (OpenCode's title
generation, summaries) are outside the loop.

A streamed answer is `chat.completion.chunk` events: the assistant's reasoning and text, the tool
call (its arguments cut in two, to exercise reassembly), a chunk with the `finish_reason`
(`tool_calls` or `stop`), and, when asked, a last chunk with `choices: []` and the usage, then
`data: [DONE]`. `prompt_tokens` includes the cached tokens (`prompt_tokens_details`), which is
what the relay's meter reads as input, so it reads exactly the `Tokens` given.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from posttrainbench.sandbox.relay.episode import EpisodeWire, Shell, Step, Tokens
from posttrainbench.sandbox.relay.fake import SSE, Reply, Seen, sse_event

CHAT = "/v1/chat/completions"
SHELL_TOOLS = ("bash", "shell", "exec_command", "run_shell_command", "Bash")
DEFAULT_MODEL = "gpt-5"
SIDE_TEXT = "Post-training run"
CREATED = 1_780_000_000


def _tools(request: Any) -> list[dict[str, Any]]:
    tools = request.get("tools") if isinstance(request, dict) else None
    functions = [t.get("function") for t in tools or [] if isinstance(t, dict)]
    return [f for f in functions if isinstance(f, dict) and isinstance(f.get("name"), str)]


def shell_tool(request: Any) -> dict[str, Any] | None:
    """The request's shell tool (its `function` object), or None if it offers none."""
    tools = _tools(request)
    by_name = {f["name"]: f for f in tools}
    named = next((by_name[n] for n in SHELL_TOOLS if n in by_name), None)
    if named is not None:
        return named
    return next((f for f in tools if "command" in _properties(f)), None)


def _properties(function: dict[str, Any]) -> dict[str, Any]:
    params = function.get("parameters")
    props = params.get("properties") if isinstance(params, dict) else None
    return props if isinstance(props, dict) else {}


def _placeholder(schema: Any) -> Any:
    kind = schema.get("type") if isinstance(schema, dict) else None
    return {"integer": 1, "number": 1, "boolean": False, "array": [], "object": {}}.get(
        str(kind), ""
    )


def shell_arguments(function: dict[str, Any], step: Shell) -> dict[str, Any]:
    """Arguments that run `step` with this tool: the command, its description where the schema
    has one, and a placeholder for any other required field."""
    props = _properties(function)
    args: dict[str, Any] = {"command": step.command}
    if "description" in props:
        args["description"] = step.description
    params = function.get("parameters")
    required = params.get("required") if isinstance(params, dict) else None
    for name in required if isinstance(required, list) else []:
        if isinstance(name, str) and name not in args:
            args[name] = _placeholder(props.get(name))
    return args


def chat_usage(tokens: Tokens) -> dict[str, Any]:
    return {
        "prompt_tokens": tokens.input_tokens,
        "completion_tokens": tokens.output_tokens,
        "total_tokens": tokens.input_tokens + tokens.output_tokens,
        "prompt_tokens_details": {"cached_tokens": tokens.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def completion_reply(
    message: dict[str, Any], finish: str, tokens: Tokens, request: Any, reply_id: str
) -> Reply:
    """`message` (role, content, optional reasoning_content and tool_calls) as the API answers
    `request`: one `chat.completion` body, or the chunks that build it."""
    model = str(request.get("model") or DEFAULT_MODEL)
    head = {"id": reply_id, "object": "chat.completion", "created": CREATED, "model": model}
    if request.get("stream") is not True:
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        body = {**head, "choices": [choice], "usage": chat_usage(tokens)}
        return Reply(chunks=[json.dumps(body).encode()], chunked=False)
    base = {**head, "object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return sse_event({**base, "choices": [choice]})

    chunks = [chunk({"role": "assistant", "content": ""})]
    if message.get("reasoning_content"):
        chunks.append(chunk({"reasoning_content": message["reasoning_content"]}))
    if message.get("content"):
        chunks.append(chunk({"content": message["content"]}))
    for index, call in enumerate(message.get("tool_calls") or []):
        text = call["function"]["arguments"]
        half = len(text) // 2
        name = call["function"]["name"]
        opening = {"index": index, "id": call["id"], "type": "function",
                   "function": {"name": name, "arguments": text[:half]}}  # fmt: skip
        chunks.append(chunk({"tool_calls": [opening]}))
        chunks.append(
            chunk({"tool_calls": [{"index": index, "function": {"arguments": text[half:]}}]})
        )
    chunks.append(chunk({}, finish))
    options = request.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        chunks.append(sse_event({**base, "choices": [], "usage": chat_usage(tokens)}))
    chunks.append(b"data: [DONE]\n\n")
    return Reply(chunks=chunks, content_type=SSE)


class ChatEpisode(EpisodeWire):
    """A Chat Completions client's side of the episode: its shell tool runs each `Shell` step."""

    def progress(self, seen: Seen, request: Any) -> int | None:
        """Steps already taken: tool results, plus finished turns (an assistant message with
        text and no tool call) so that a continued conversation goes on to the next step."""
        if urlsplit(seen.path).path != CHAT or shell_tool(request) is None:
            return None
        done = 0
        for message in request.get("messages") or []:
            if not isinstance(message, dict):
                continue
            role = message.get("role")
            has_text = bool(message.get("content")) and not message.get("tool_calls")
            if role == "tool" or (role == "assistant" and has_text):
                done += 1
        return done

    def reply(self, step: Step, call_id: str, tokens: Tokens, seen: Seen, request: Any) -> Reply:
        message: dict[str, Any]
        if isinstance(step, Shell):
            function = shell_tool(request) or {"name": "bash"}
            arguments = json.dumps(shell_arguments(function, step))
            call = {"id": call_id, "type": "function",
                    "function": {"name": function["name"], "arguments": arguments}}  # fmt: skip
            message = {"role": "assistant", "content": f"I will {step.description}.",
                       "reasoning_content": f"Next: {step.description}.",
                       "tool_calls": [call]}  # fmt: skip
            finish = "tool_calls"
        else:
            message, finish = {"role": "assistant", "content": step.text}, "stop"
        return completion_reply(message, finish, tokens, request, f"chatcmpl-{call_id}")

    def side_reply(self, tokens: Tokens, seen: Seen, request: Any) -> Reply:
        message = {"role": "assistant", "content": SIDE_TEXT}
        return completion_reply(message, "stop", tokens, request, "chatcmpl-side")
