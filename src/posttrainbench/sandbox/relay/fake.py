"""A fake LLM provider for tests and benchmarks: an HTTP server on 127.0.0.1 that records every
request and answers scripted replies, plus canned answers in each wire format. Never a real API.

    with FakeUpstream() as up:
        up.script("/v1/messages", Reply(chunks=anthropic_sse("hi", input_tokens=10)))
        env = {"ANTHROPIC_API_KEY": "sk-real", "ANTHROPIC_BASE_URL": up.url}
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

SSE = "text/event-stream"


@dataclass
class Reply:
    status: int = 200
    chunks: list[bytes] = field(default_factory=list)
    content_type: str = "application/json"
    chunked: bool = True  # False: one Content-Length body
    headers: dict[str, str] = field(default_factory=dict)
    gate: threading.Event | None = None  # waited on after the first chunk
    gap_s: float = 0.0  # pause between chunks

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


@dataclass
class Seen:
    method: str
    path: str  # with the query
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _any(self) -> None:
        up = cast(_Server, self.server).fake
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        seen = Seen(self.command, self.path, list(self.headers.items()), body)
        up.seen.append(seen)
        path = urlsplit(self.path).path
        if path in up.replies:
            reply = up.replies[path]
        elif up.handler is not None:
            reply = up.handler(seen)
        else:
            reply = up.default
        self.send_response(reply.status)
        self.send_header("content-type", reply.content_type)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunked:
            self.send_header("transfer-encoding", "chunked")
        else:
            self.send_header("content-length", str(len(reply.body)))
        self.end_headers()
        for i, chunk in enumerate(reply.chunks):
            if i and reply.gap_s:
                time.sleep(reply.gap_s)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if reply.chunked else chunk)
            self.wfile.flush()
            if i == 0 and reply.gate is not None:
                reply.gate.wait(10)
        if reply.chunked:
            self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = _any

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeUpstream

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up is fine
            super().handle_error(request, client_address)


class FakeUpstream:
    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}
        self.default = Reply(404, [b'{"error": "no such path"}'])
        self.seen: list[Seen] = []
        self.handler: Callable[[Seen], Reply] | None = None  # answers paths not scripted
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def script(self, path: str, reply: Reply) -> FakeUpstream:
        self.replies[path] = reply
        return self

    def __enter__(self) -> FakeUpstream:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


def sse_event(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def anthropic_sse(
    text: str,
    *,
    model: str = "claude-sonnet-4-5",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cache_read: int = 0,
    cache_write: int = 0,
) -> list[bytes]:
    usage = {
        "input_tokens": input_tokens,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
        "output_tokens": 1,
    }
    message = {"id": "msg_1", "type": "message", "role": "assistant", "model": model}
    events = [
        ("message_start", {"type": "message_start", "message": {**message, "usage": usage}}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        ),
        *(
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"text": word}},
            )
            for word in text.split(" ")
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {"type": "message_delta", "delta": {}, "usage": {"output_tokens": output_tokens}},
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [sse_event(data, name) for name, data in events]


def anthropic_json(text: str, *, model: str = "claude-sonnet-4-5", **tokens: int) -> bytes:
    usage = {
        "input_tokens": tokens.get("input_tokens", 0),
        "output_tokens": tokens.get("output_tokens", 0),
        "cache_read_input_tokens": tokens.get("cache_read", 0),
        "cache_creation_input_tokens": tokens.get("cache_write", 0),
    }
    content = [{"type": "text", "text": text}]
    return json.dumps(
        {"type": "message", "model": model, "content": content, "usage": usage}
    ).encode()


def _responses_usage(input_tokens: int, output_tokens: int, cached: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def responses_sse(
    text: str,
    *,
    model: str = "gpt-5",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached: int = 0,
) -> list[bytes]:
    response = {"id": "resp_1", "object": "response", "model": model, "usage": None}
    done = {**response, "usage": _responses_usage(input_tokens, output_tokens, cached)}
    events = [
        ("response.created", {"type": "response.created", "response": response}),
        *(
            ("response.output_text.delta", {"type": "response.output_text.delta", "delta": w})
            for w in text.split(" ")
        ),
        ("response.completed", {"type": "response.completed", "response": done}),
    ]
    return [sse_event(data, name) for name, data in events]


def responses_json(text: str, *, model: str = "gpt-5", **tokens: int) -> bytes:
    usage = _responses_usage(
        tokens.get("input_tokens", 0), tokens.get("output_tokens", 0), tokens.get("cached", 0)
    )
    output = [{"type": "message", "content": [{"type": "output_text", "text": text}]}]
    body = {"id": "resp_1", "object": "response", "model": model, "output": output, "usage": usage}
    return json.dumps(body).encode()


def _chat_usage(input_tokens: int, output_tokens: int, cached: int) -> dict[str, Any]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def chat_sse(
    text: str,
    *,
    model: str = "gpt-4.1",
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached: int = 0,
) -> list[bytes]:
    """Chat Completions chunks as sent with `stream_options.include_usage`, then `[DONE]`."""
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model}
    chunks: list[dict[str, Any]] = [
        {**base, "choices": [{"index": 0, "delta": {"content": w}}], "usage": None}
        for w in text.split(" ")
    ]
    chunks.append(
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": None}
    )
    chunks.append(
        {**base, "choices": [], "usage": _chat_usage(input_tokens, output_tokens, cached)}
    )
    return [sse_event(c) for c in chunks] + [b"data: [DONE]\n\n"]


def chat_json(text: str, *, model: str = "gpt-4.1", **tokens: int) -> bytes:
    usage = _chat_usage(
        tokens.get("input_tokens", 0), tokens.get("output_tokens", 0), tokens.get("cached", 0)
    )
    choice = {"index": 0, "message": {"role": "assistant", "content": text}}
    body = {"id": "chatcmpl-1", "object": "chat.completion", "model": model, "choices": [choice]}
    return json.dumps({**body, "usage": usage}).encode()


def _gemini_chunk(text: str, usage: dict[str, int] | None) -> dict[str, Any]:
    chunk: dict[str, Any] = {"candidates": [{"content": {"parts": [{"text": text}]}}]}
    if usage is not None:
        chunk["usageMetadata"] = usage
    return chunk


def gemini_sse(
    text: str,
    *,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cached: int = 0,
    thoughts: int = 0,
) -> list[bytes]:
    """`:streamGenerateContent?alt=sse` chunks; each has usage so far, the last the totals and
    the finish reason."""
    words = text.split(" ")
    chunks = []
    for i, word in enumerate(words, 1):
        usage = {"promptTokenCount": input_tokens, "candidatesTokenCount": i, "totalTokenCount": 0}
        if i == len(words):
            usage = {
                "promptTokenCount": input_tokens,
                "candidatesTokenCount": output_tokens,
                "cachedContentTokenCount": cached,
                "thoughtsTokenCount": thoughts,
                "totalTokenCount": input_tokens + output_tokens + thoughts,
            }
        chunks.append(_gemini_chunk(word, usage))
    chunks[-1]["candidates"][0]["finishReason"] = "STOP"
    return [f"data: {json.dumps(c)}\r\n\r\n".encode() for c in chunks]


def gemini_json(text: str, **tokens: int) -> bytes:
    usage = {
        "promptTokenCount": tokens.get("input_tokens", 0),
        "candidatesTokenCount": tokens.get("output_tokens", 0),
        "cachedContentTokenCount": tokens.get("cached", 0),
        "thoughtsTokenCount": tokens.get("thoughts", 0),
    }
    return json.dumps(_gemini_chunk(text, usage)).encode()
