"""What a recorded LLM call says, read from its bodies in each provider's wire format: the
conversation a request sends (system text, user text, the assistant's earlier turns, tool calls
and every tool output sent back) and what the answer says (text, reasoning, tool calls), as flat
`Entry`s. A streamed answer is reassembled from its events.

One `Reader` per wire format (Anthropic Messages, OpenAI Chat Completions and Responses, Gemini),
chosen by provider and path from `READERS`.
"""

from __future__ import annotations

import contextlib
import json
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from posttrainbench.sandbox.relay.wire import SseParser

Role = Literal["system", "user", "agent", "tool"]
Kind = Literal["text", "reasoning", "call", "result"]


@dataclass(frozen=True)
class Entry:
    role: Role
    kind: Kind
    text: str = ""
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""  # canonical JSON of a call's arguments

    def key(self) -> tuple[str, str, str | None, str | None, str, str]:
        """What makes two entries the same message (a request repeats earlier ones)."""
        return (self.role, self.kind, self.call_id, self.name, self.arguments, self.text.strip())

    def args(self) -> dict[str, Any]:
        value = json.loads(self.arguments) if self.arguments else {}
        return value if isinstance(value, dict) else {"value": value}


def call(call_id: str | None, name: str, arguments: Any) -> Entry:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            arguments = {"raw": arguments}
    if not isinstance(arguments, dict):
        arguments = {"value": arguments}
    canonical = json.dumps(arguments, sort_keys=True, ensure_ascii=False)
    return Entry("agent", "call", call_id=call_id or None, name=name, arguments=canonical)


def flatten(content: Any) -> str:
    """Text of a content field: a string, or the text of a list of parts at any depth."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(t for t in (flatten(p) for p in content) if t)
    if isinstance(content, dict):
        for name in ("text", "output", "content"):
            if name in content:
                return flatten(content[name])
        return ""
    return str(content)


def sse_events(text: str) -> list[Any]:
    """The JSON `data:` of each event of an SSE stream (non-JSON data, e.g. `[DONE]`, left out)."""
    events: list[Any] = []

    def take(name: str, data: str) -> None:
        with contextlib.suppress(ValueError):
            events.append(json.loads(data))

    parser = SseParser(take)
    parser.feed(text.encode("utf-8"))
    parser.close()
    return events


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


class Reader(ABC):
    provider: ClassVar[str]
    path: ClassVar[str]  # a regex searched in the call's path

    def matches(self, provider: str, path: str) -> bool:
        return provider == self.provider and re.search(self.path, path) is not None

    @abstractmethod
    def request(self, body: dict[str, Any]) -> list[Entry]: ...

    @abstractmethod
    def response(self, text: str, stream: bool) -> list[Entry]: ...


class AnthropicReader(Reader):
    provider, path = "anthropic", r"^/v1/messages(\?|$)"

    def request(self, body: dict[str, Any]) -> list[Entry]:
        out = []
        if system := flatten(body.get("system")):
            out.append(Entry("system", "text", system))
        for message in _dicts(body.get("messages")):
            role: Role = "agent" if message.get("role") == "assistant" else "user"
            content = message.get("content")
            if isinstance(content, str):
                out.append(Entry(role, "text", content))
                continue
            out += self._blocks(_dicts(content), role)
        return out

    def _blocks(self, blocks: list[dict[str, Any]], role: Role) -> list[Entry]:
        out = []
        for block in blocks:
            kind = block.get("type")
            if kind == "text":
                out.append(Entry(role, "text", str(block.get("text") or "")))
            elif kind == "thinking":
                out.append(Entry(role, "reasoning", str(block.get("thinking") or "")))
            elif kind in ("tool_use", "server_tool_use"):
                out.append(call(block.get("id"), str(block.get("name")), block.get("input")))
            elif kind == "tool_result":
                text = flatten(block.get("content"))
                out.append(Entry("tool", "result", text, call_id=block.get("tool_use_id")))
        return out

    def response(self, text: str, stream: bool) -> list[Entry]:
        if not stream:
            message = json.loads(text)
            return self._blocks(_dicts(message.get("content")), "agent")
        blocks: dict[int, dict[str, Any]] = {}
        partial: dict[int, str] = {}
        for event in sse_events(text):
            if not isinstance(event, dict):
                continue
            index = event.get("index")
            if event.get("type") == "content_block_start" and isinstance(index, int):
                blocks[index] = dict(event.get("content_block") or {})
            elif event.get("type") == "content_block_delta" and index in blocks:
                delta = event.get("delta") or {}
                block = blocks[index]
                for field, name in (("text", "text"), ("thinking", "thinking")):
                    if isinstance(delta.get(name), str):
                        block[field] = str(block.get(field) or "") + delta[name]
                if isinstance(delta.get("partial_json"), str):
                    partial[index] = partial.get(index, "") + delta["partial_json"]
        for index, raw in partial.items():
            blocks[index]["input"] = raw
        return self._blocks([blocks[i] for i in sorted(blocks)], "agent")


class ChatReader(Reader):
    provider, path = "openai", r"^/v1/chat/completions"

    def request(self, body: dict[str, Any]) -> list[Entry]:
        out = []
        for message in _dicts(body.get("messages")):
            role = message.get("role")
            if role == "tool":
                text = flatten(message.get("content"))
                out.append(Entry("tool", "result", text, call_id=message.get("tool_call_id")))
            elif role == "assistant":
                out += self._assistant(message)
            elif text := flatten(message.get("content")):
                out.append(
                    Entry("system" if role in ("system", "developer") else "user", "text", text)
                )
        return out

    def _assistant(self, message: dict[str, Any]) -> list[Entry]:
        out = []
        if reasoning := flatten(message.get("reasoning_content")):
            out.append(Entry("agent", "reasoning", reasoning))
        if text := flatten(message.get("content")):
            out.append(Entry("agent", "text", text))
        for tool in _dicts(message.get("tool_calls")):
            function = tool.get("function") or {}
            out.append(call(tool.get("id"), str(function.get("name")), function.get("arguments")))
        return out

    def response(self, text: str, stream: bool) -> list[Entry]:
        if not stream:
            choices = _dicts(json.loads(text).get("choices"))
            return self._assistant(choices[0].get("message") or {}) if choices else []
        message: dict[str, Any] = {"content": "", "reasoning_content": ""}
        calls: dict[int, dict[str, Any]] = {}
        for event in sse_events(text):
            choices = _dicts(event.get("choices")) if isinstance(event, dict) else []
            delta = next((c.get("delta") for c in choices if c.get("index", 0) == 0), None)
            if not isinstance(delta, dict):
                continue
            for name in ("content", "reasoning_content"):
                if isinstance(delta.get(name), str):
                    message[name] += delta[name]
            for part in _dicts(delta.get("tool_calls")):
                slot = calls.setdefault(int(part.get("index") or 0), {"function": {}})
                if part.get("id"):
                    slot["id"] = part["id"]
                function = part.get("function") or {}
                if function.get("name"):
                    slot["function"]["name"] = function["name"]
                args = function.get("arguments")
                if isinstance(args, str):
                    slot["function"]["arguments"] = slot["function"].get("arguments", "") + args
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
        return self._assistant(message)


class ResponsesReader(Reader):
    provider, path = "openai", r"^/v1/responses"
    _CALLS = ("function_call", "custom_tool_call", "local_shell_call")
    _OUTPUTS = ("function_call_output", "custom_tool_call_output", "local_shell_call_output")

    def request(self, body: dict[str, Any]) -> list[Entry]:
        out = []
        if instructions := flatten(body.get("instructions")):
            out.append(Entry("system", "text", instructions))
        items = body.get("input")
        if isinstance(items, str):
            return [*out, Entry("user", "text", items)]
        for item in _dicts(items):
            out += self._item(item)
        return out

    def _item(self, item: dict[str, Any]) -> list[Entry]:
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            who: Role = (
                "agent" if role == "assistant" else "system" if role in ("system", "developer")
                else "user"
            )  # fmt: skip
            text = flatten(item.get("content"))
            return [Entry(who, "text", text)] if text else []
        if kind == "reasoning":
            text = flatten(item.get("summary")) or flatten(item.get("content"))
            return [Entry("agent", "reasoning", text)] if text else []
        if kind in self._CALLS:
            args = item.get("arguments", item.get("input", item.get("action")))
            return [call(item.get("call_id"), str(item.get("name") or kind), args)]
        if kind in self._OUTPUTS:
            return [
                Entry("tool", "result", flatten(item.get("output")), call_id=item.get("call_id"))
            ]
        return []

    def response(self, text: str, stream: bool) -> list[Entry]:
        if not stream:
            return [e for item in _dicts(json.loads(text).get("output")) for e in self._item(item)]
        done: list[dict[str, Any]] = []
        final: list[dict[str, Any]] | None = None
        deltas = ""
        for event in sse_events(text):
            if not isinstance(event, dict):
                continue
            kind = event.get("type")
            response = event.get("response")
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                if isinstance(response, dict) and response.get("output"):
                    final = _dicts(response.get("output"))
            elif kind == "response.output_item.done" and isinstance(event.get("item"), dict):
                done.append(event["item"])
            elif kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
                deltas += event["delta"]
        items = final if final is not None else done
        entries = [e for item in items for e in self._item(item)]
        if not entries and deltas:
            entries = [Entry("agent", "text", deltas)]
        return entries


class GeminiReader(Reader):
    provider, path = "gemini", r":(stream)?[gG]enerateContent"

    def request(self, body: dict[str, Any]) -> list[Entry]:
        out = []
        system = body.get("systemInstruction", body.get("system_instruction"))
        if text := flatten((system or {}).get("parts") if isinstance(system, dict) else system):
            out.append(Entry("system", "text", text))
        for content in _dicts(body.get("contents")):
            role: Role = "agent" if content.get("role") == "model" else "user"
            out += self._parts(_dicts(content.get("parts")), role)
        return out

    def _parts(self, parts: list[dict[str, Any]], role: Role) -> list[Entry]:
        out = []
        for part in parts:
            fc = part.get("functionCall", part.get("function_call"))
            fr = part.get("functionResponse", part.get("function_response"))
            if isinstance(fc, dict):
                out.append(call(fc.get("id"), str(fc.get("name")), fc.get("args")))
            elif isinstance(fr, dict):
                response = fr.get("response")
                text = flatten(response) or json.dumps(response, ensure_ascii=False)
                out.append(Entry("tool", "result", text, call_id=fr.get("id")))
            elif isinstance(part.get("text"), str):
                kind: Kind = "reasoning" if part.get("thought") else "text"
                out.append(Entry(role, kind, part["text"]))
        return out

    def response(self, text: str, stream: bool) -> list[Entry]:
        if stream and text.lstrip().startswith(("data:", "event:", ":")):
            chunks = sse_events(text)
        else:
            parsed = json.loads(text)
            chunks = parsed if isinstance(parsed, list) else [parsed]
        merged: list[Entry] = []
        for chunk in _dicts(chunks):
            candidates = _dicts(chunk.get("candidates"))
            content = candidates[0].get("content") if candidates else None
            parts = _dicts(content.get("parts")) if isinstance(content, dict) else []
            for entry in self._parts(parts, "agent"):
                last = merged[-1] if merged else None
                if last and entry.kind in ("text", "reasoning") and last.kind == entry.kind:
                    merged[-1] = Entry("agent", entry.kind, last.text + entry.text)
                else:
                    merged.append(entry)
        return merged


READERS: tuple[Reader, ...] = (
    AnthropicReader(),
    ChatReader(),
    ResponsesReader(),
    GeminiReader(),
)


def reader_for(provider: str, path: str) -> Reader | None:
    return next((r for r in READERS if r.matches(provider, path)), None)
