"""The episode in OpenAI's Responses API (`POST /v1/responses`), as Codex CLI speaks it.

Codex sends its whole conversation in `input` on every request (`store: false`): its tool results
are `function_call_output` items, so progress is the number of commands that have finished. Its
shell tool is found in the request's `tools`: `exec_command` (`cmd`, a string; the default),
`shell_command` (`command`, a string) or `shell` (`command`, an argv list). `exec_command` yields
after a while and returns a session id while the command still runs; the episode then polls that
session with `write_stdin` until the command exits, so a long step (training) ends before the next
one starts. A request without a shell tool (e.g. a compaction or review call) is outside the loop.

Each answer streams `response.created`, a reasoning item whose summary is the step's description,
then a `function_call` or an assistant `message`, and `response.completed` whose `usage` holds the
answer's `Tokens` (`input_tokens` counts the cached ones too, as the relay's meter reads it).
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from posttrainbench.sandbox.relay.episode import EpisodeWire, Say, Step, Tokens
from posttrainbench.sandbox.relay.fake import SSE, Reply, Seen, sse_event

SHELL_TOOLS = ("exec_command", "shell_command", "shell")
POLL_TOOL = "write_stdin"
POLL_WAIT_MS = 300_000  # the longest wait write_stdin allows for an empty poll
_RUNNING = re.compile(r"Process running with session ID (\d+)")
_MODEL = "gpt-5.5"


def _items(request: Any) -> list[dict[str, Any]]:
    items = request.get("input") if isinstance(request, dict) else None
    if not isinstance(items, list):
        return []
    return [i for i in items if isinstance(i, dict)]


def _tools(request: Any) -> dict[str, dict[str, Any]]:
    tools = request.get("tools") if isinstance(request, dict) else None
    if not isinstance(tools, list):
        return {}
    return {t["name"]: t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)}


def _output_text(item: dict[str, Any]) -> str:
    output = item.get("output")
    if isinstance(output, str):
        return output
    if isinstance(output, list):  # content items: [{"type": "input_text", "text": ...}]
        return "".join(str(p.get("text", "")) for p in output if isinstance(p, dict))
    return ""


def _session(output: dict[str, Any]) -> int | None:
    """The exec session a tool result says is still running (read from its header only)."""
    header = _output_text(output).split("\nOutput:", 1)[0]
    found = _RUNNING.search(header)
    return int(found.group(1)) if found else None


def running_session(request: Any) -> int | None:
    """The exec session the last tool result says is still running, if any."""
    outputs = [i for i in _items(request) if i.get("type") == "function_call_output"]
    return _session(outputs[-1]) if outputs else None


def shell_arguments(tool: dict[str, Any], command: str) -> dict[str, Any]:
    """Arguments that make `tool` run `command`, shaped by the tool's own parameter schema."""
    params = tool.get("parameters")
    props = params.get("properties", {}) if isinstance(params, dict) else {}
    if "cmd" in props:
        return {"cmd": command, "yield_time_ms": 30_000}
    spec = props.get("command", {})
    if isinstance(spec, dict) and spec.get("type") == "array":
        return {"command": ["bash", "-lc", command]}
    return {"command": command}


class ResponsesEpisode(EpisodeWire):
    """The Responses wire: SSE when the request has `stream: true`, one JSON body otherwise."""

    def __init__(self, model: str | None = None) -> None:
        self.model = model  # None: echo the request's model

    def progress(self, seen: Seen, request: Any) -> int | None:
        if not seen.path.split("?")[0].endswith("/responses") or seen.method != "POST":
            return None
        if not any(name in _tools(request) for name in SHELL_TOOLS):
            return None
        outputs = [i for i in _items(request) if i.get("type") == "function_call_output"]
        return sum(1 for o in outputs if _session(o) is None)

    def reply(self, step: Step, call_id: str, tokens: Tokens, seen: Seen, request: Any) -> Reply:
        tools = _tools(request)
        session = running_session(request)
        if session is not None and POLL_TOOL in tools:
            poll = {"session_id": session, "chars": "", "yield_time_ms": POLL_WAIT_MS}
            call = _call(f"{call_id}_poll{len(_items(request))}", POLL_TOOL, poll)
            return self._answer([_reasoning("wait for the command"), call], tokens, request)
        if isinstance(step, Say):
            return self._answer([_message(step.text)], tokens, request)
        name = next(n for n in SHELL_TOOLS if n in tools)
        call = _call(call_id, name, shell_arguments(tools[name], step.command))
        return self._answer([_reasoning(step.description), call], tokens, request)

    def side_reply(self, tokens: Tokens, seen: Seen, request: Any) -> Reply:
        return self._answer([_message("OK.")], tokens, request)

    def _answer(self, output: list[dict[str, Any]], tokens: Tokens, request: Any) -> Reply:
        model = self.model or (request.get("model") if isinstance(request, dict) else None)
        response: dict[str, Any] = {
            "id": f"resp_{tokens.input_tokens}",
            "object": "response",
            "created_at": 0,
            "model": model if isinstance(model, str) else _MODEL,
            "status": "in_progress",
            "output": [],
            "usage": None,
        }
        done = {**response, "status": "completed", "output": output, "usage": _usage(tokens)}
        if not (isinstance(request, dict) and request.get("stream") is True):
            return Reply(chunks=[json.dumps(done).encode()], chunked=False)
        events = [("response.created", {"response": response})]
        for index, item in enumerate(output):
            events += _item_events(index, item)
        events.append(("response.completed", {"response": done}))
        chunks = [sse_event({"type": name, "sequence_number": n, **data}, name)
                  for n, (name, data) in enumerate(events)]  # fmt: skip
        return Reply(chunks=chunks, content_type=SSE)


def _usage(tokens: Tokens) -> dict[str, Any]:
    return {
        "input_tokens": tokens.input_tokens,
        "input_tokens_details": {"cached_tokens": tokens.cached_tokens},
        "output_tokens": tokens.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": tokens.input_tokens + tokens.output_tokens,
    }


def _reasoning(summary: str) -> dict[str, Any]:
    text = {"type": "summary_text", "text": f"**{summary[:1].upper()}{summary[1:]}**"}
    return {"type": "reasoning", "id": f"rs_{zlib.crc32(summary.encode()):08x}", "summary": [text]}


def _call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": f"fc_{call_id}",
        "call_id": call_id,
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }


def _message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{zlib.crc32(text.encode()):08x}",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _item_events(index: int, item: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The events that stream one output item: added, its deltas, done."""
    at = {"output_index": index}
    kind = item["type"]
    if kind == "reasoning":
        start = {**item, "summary": []}
    elif kind == "message":
        start = {**item, "status": "in_progress", "content": []}
    else:
        start = {**item, "arguments": "", "status": "in_progress"}
    events = [("response.output_item.added", {**at, "item": start})]
    ref = {**at, "item_id": item["id"]}
    if kind == "reasoning":
        for i, part in enumerate(item["summary"]):
            events.append(("response.reasoning_summary_part.added", {**ref, "summary_index": i}))
            delta = {**ref, "summary_index": i, "delta": part["text"]}
            events.append(("response.reasoning_summary_text.delta", delta))
    elif kind == "message":
        text = item["content"][0]["text"]
        part = {**ref, "content_index": 0}
        events.append(("response.content_part.added", {**part, "part": {"type": "output_text"}}))
        for word in re.findall(r"\S+\s*", text):
            events.append(("response.output_text.delta", {**part, "delta": word}))
        events.append(("response.output_text.done", {**part, "text": text}))
    else:
        delta = {**ref, "delta": item["arguments"]}
        events.append(("response.function_call_arguments.delta", delta))
    events.append(("response.output_item.done", {**at, "item": item}))
    return events
