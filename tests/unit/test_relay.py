"""The API relay end to end: a client on its unix socket, fake upstreams on 127.0.0.1 in each
wire format. Streams pass byte for byte, tokens and costs are exact, the real key stays out of
everything the agent or the run folder can see, refusals are shaped and logged."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from posttrainbench.sandbox.relay import LlmCall, Relay
from posttrainbench.sandbox.relay.fake import (
    SSE,
    FakeUpstream,
    Reply,
    anthropic_json,
    anthropic_sse,
    chat_json,
    chat_sse,
    gemini_json,
    gemini_sse,
    responses_json,
    responses_sse,
)

REAL_KEY = "sk-real-SECRET-4f1d9c2b7a8e6d5c3b2a1908"
DUMMY = "ptb-relay-dummy-token-0123456789"
KEY_VARS = {
    "anthropic": "ANTHROPIC_API_KEY",
    "openai": "OPENAI_API_KEY",
    "gemini": "GEMINI_API_KEY",
}
BASE_VARS = {
    "anthropic": "ANTHROPIC_BASE_URL",
    "openai": "OPENAI_BASE_URL",
    "gemini": "GOOGLE_GEMINI_BASE_URL",
}
AUTH = {
    "anthropic": {"x-api-key": DUMMY, "anthropic-version": "2023-06-01"},
    "openai": {"authorization": f"Bearer {DUMMY}"},
    "gemini": {"x-goog-api-key": DUMMY},
}
MESSAGES = "/v1/messages"
GEMINI_STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent"


class Agent:
    """The agent's side: an HTTP client on the relay's socket that keeps every byte it got."""

    def __init__(self, relay: Relay, provider: str) -> None:
        transport = httpx.HTTPTransport(uds=str(relay.socket_path))
        self.http = httpx.Client(transport=transport, base_url="http://127.0.0.1:8", timeout=20)
        self.relay, self.provider = relay, provider
        self.received: list[bytes] = []

    def call(
        self,
        path: str,
        body: Any = None,
        *,
        method: str = "POST",
        auth: bool = True,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, bytes]:
        all_headers = (AUTH[self.provider] if auth else {}) | (headers or {})
        content = None if body is None else json.dumps(body).encode()
        with self.http.stream(method, path, content=content, headers=all_headers) as r:
            data = b"".join(r.iter_raw())
        self.received += [data, repr(r.headers.multi_items()).encode()]
        return r, data

    def error(self, path: str, body: Any = None, **kw: Any) -> tuple[int, dict[str, Any]]:
        r, data = self.call(path, body, **kw)
        return r.status_code, json.loads(data)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ptbr-", dir="/tmp"))  # short: sun_path is 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


MakeRelay = Callable[..., tuple[Relay, Agent]]


@pytest.fixture
def make_relay(tmp_path: Path, sock_dir: Path, upstream: FakeUpstream) -> Iterator[MakeRelay]:
    made: list[tuple[Relay, Agent]] = []

    def make(
        provider: str = "anthropic",
        *,
        budget: Any = None,
        env: dict[str, str] | None = None,
        base: str | None = None,
        prices: Path | None = None,
        allow_provider_tools: bool = False,
    ) -> tuple[Relay, Agent]:
        environ = {KEY_VARS[provider]: REAL_KEY, BASE_VARS[provider]: base or upstream.url}
        relay = Relay(
            provider,
            sock_dir / f"{provider}{len(made)}.sock",
            tmp_path / "run" / "agent" / "llm_calls.jsonl",
            DUMMY,
            budget_usd=budget,
            prices=prices,
            environ=environ | (env or {}),
            allow_provider_tools=allow_provider_tools,
        )
        relay.start()
        made.append((relay, Agent(relay, provider)))
        return made[-1]

    yield make
    for relay, agent in made:
        agent.http.close()
        relay.stop()
        assert not any(REAL_KEY.encode() in data for data in agent.received)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert REAL_KEY.encode() not in path.read_bytes(), path
    for seen in upstream.seen:
        assert DUMMY not in seen.path and DUMMY.encode() not in seen.body
        assert all(DUMMY not in value for _, value in seen.headers)


def calls(relay: Relay) -> list[LlmCall]:
    assert relay.wait_idle()
    lines = relay.log_path.read_text().splitlines()
    return [LlmCall.model_validate_json(line) for line in lines]


def tokens(call: LlmCall) -> tuple[int, int, int, int]:
    return (call.input_tokens, call.output_tokens, call.cached_tokens, call.cache_write_tokens)


# ---------------------------------------------------------------------- pass-through and metering


def test_anthropic_stream_passes_byte_identical_with_exact_cost(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    reply = Reply(
        chunks=anthropic_sse(
            "hello there agent",
            input_tokens=100,
            cache_read=2000,
            cache_write=500,
            output_tokens=300,
        ),
        content_type=SSE,
    )
    upstream.script(MESSAGES, reply)
    relay, agent = make_relay("anthropic")
    body = {"model": "claude-sonnet-4-5-20250929", "stream": True, "messages": []}
    headers = {"anthropic-beta": "fine-grained-tool-streaming-2025-05-14", "x-custom": "kept"}
    r, data = agent.call(MESSAGES + "?beta=true", body, headers=headers)

    assert r.status_code == 200 and r.headers["content-type"] == SSE
    assert data == reply.body
    seen = upstream.seen[-1]
    assert seen.path == MESSAGES + "?beta=true"
    assert seen.header("x-api-key") == REAL_KEY
    assert seen.header("anthropic-version") == "2023-06-01"
    assert seen.header("anthropic-beta") == "fine-grained-tool-streaming-2025-05-14"
    assert seen.header("x-custom") == "kept"
    assert seen.json() == body  # forwarded unchanged

    (call,) = calls(relay)
    assert tokens(call) == (2600, 300, 2000, 500)
    # 100 × $3 + 2000 × $0.30 + 500 × $3.75 + 300 × $15, per million tokens
    assert call.cost_usd == Decimal("0.007275")
    assert '"cost_usd":"0.007275"' in relay.log_path.read_text()
    assert (call.stream, call.priced, call.status, call.refused) == (True, True, 200, None)
    assert call.model == "claude-sonnet-4-5-20250929" and call.path == MESSAGES + "?beta=true"
    assert call.response_bytes == len(reply.body) and call.request_bytes == len(json.dumps(body))
    usage = relay.usage()  # calls() waited for the relay to log
    assert (usage.calls, usage.cost_usd, usage.input_tokens) == (1, Decimal("0.007275"), 2600)


def test_anthropic_json_and_free_token_counting(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    reply = Reply(chunks=[anthropic_json("hi", input_tokens=10, output_tokens=5)], chunked=False)
    upstream.script(MESSAGES, reply)
    upstream.script(MESSAGES + "/count_tokens", Reply(chunks=[b'{"input_tokens": 42}']))
    relay, agent = make_relay("anthropic")
    r, data = agent.call(MESSAGES, {"model": "claude-haiku-4-5", "messages": []})
    assert (r.status_code, data) == (200, reply.body)
    assert r.headers["content-length"] == str(len(reply.body))
    r, data = agent.call(MESSAGES + "/count_tokens", {"model": "claude-haiku-4-5"})
    assert (r.status_code, data) == (200, b'{"input_tokens": 42}')
    message, counting = calls(relay)
    assert tokens(message) == (10, 5, 0, 0) and message.cost_usd == Decimal("0.000035")
    assert tokens(counting) == (0, 0, 0, 0) and counting.cost_usd == 0


def test_openai_responses_stream_and_json(make_relay: MakeRelay, upstream: FakeUpstream) -> None:
    stream = Reply(
        chunks=responses_sse("a b c", input_tokens=1000, output_tokens=200, cached=400),
        content_type=SSE,
    )
    upstream.script("/v1/responses", stream)
    relay, agent = make_relay("openai", base=upstream.url + "/v1")
    r, data = agent.call("/v1/responses", {"model": "gpt-5", "stream": True, "input": "x"})
    assert (r.status_code, data) == (200, stream.body)
    assert upstream.seen[-1].header("authorization") == f"Bearer {REAL_KEY}"
    assert upstream.seen[-1].path == "/v1/responses"

    whole = Reply(chunks=[responses_json("a", input_tokens=10, output_tokens=1)])
    upstream.script("/v1/responses", whole)
    r, data = agent.call("/v1/responses", {"model": "gpt-5-mini-2025-08-07", "input": "x"})
    assert (r.status_code, data) == (200, whole.body)

    streamed, plain = calls(relay)
    assert tokens(streamed) == (1000, 200, 400, 0) and streamed.stream
    # 600 × $1.25 + 400 × $0.125 + 200 × $10
    assert streamed.cost_usd == Decimal("0.0028")
    assert tokens(plain) == (10, 1, 0, 0) and not plain.stream
    assert plain.cost_usd == Decimal("0.0000045")  # gpt-5-mini: 10 × $0.25 + 1 × $2


def test_openai_chat_stream_asks_for_usage_and_passes_bytes(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    reply = Reply(
        chunks=chat_sse("one two", input_tokens=1000, output_tokens=50, cached=200),
        content_type=SSE,
    )
    upstream.script("/v1/chat/completions", reply)
    relay, agent = make_relay("openai")
    body = {"model": "gpt-4.1-2025-04-14", "stream": True, "messages": [{"role": "user"}]}
    r, data = agent.call("/v1/chat/completions", body)
    assert (r.status_code, data) == (200, reply.body)
    sent = upstream.seen[-1].json()
    assert sent["stream_options"] == {"include_usage": True}
    assert {k: v for k, v in sent.items() if k != "stream_options"} == body

    upstream.script("/v1/chat/completions", Reply(chunks=[chat_json("x", input_tokens=7)]))
    r, data = agent.call("/v1/chat/completions", {"model": "gpt-4.1", "messages": []})
    assert r.status_code == 200 and "stream_options" not in upstream.seen[-1].json()

    streamed, plain = calls(relay)
    assert tokens(streamed) == (1000, 50, 200, 0)
    assert streamed.cost_usd == Decimal("0.0021")  # 800 × $2 + 200 × $0.50 + 50 × $8
    assert tokens(plain) == (7, 0, 0, 0) and plain.cost_usd == Decimal("0.000014")


@pytest.mark.parametrize(
    ("base_suffix", "upstream_path"),
    [("", "/v1/responses"), ("/v1", "/v1/responses"), ("/proxy/v1/", "/proxy/v1/responses")],
)
def test_openai_base_with_or_without_v1(
    make_relay: MakeRelay, upstream: FakeUpstream, base_suffix: str, upstream_path: str
) -> None:
    upstream.script(upstream_path, Reply(chunks=[responses_json("a")]))
    _, agent = make_relay("openai", base=upstream.url + base_suffix)
    r, _ = agent.call("/v1/responses", {"model": "gpt-5", "input": "x"})
    assert r.status_code == 200 and upstream.seen[-1].path == upstream_path


def test_gemini_stream_with_key_in_query(make_relay: MakeRelay, upstream: FakeUpstream) -> None:
    reply = Reply(
        chunks=gemini_sse("x y z", input_tokens=1000, output_tokens=20, cached=100, thoughts=30),
        content_type=SSE,
    )
    upstream.script(GEMINI_STREAM, reply)
    relay, agent = make_relay("gemini")
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    r, data = agent.call(f"{GEMINI_STREAM}?alt=sse&key={DUMMY}", body, auth=False)
    assert (r.status_code, data) == (200, reply.body)
    seen = upstream.seen[-1]
    assert seen.path == f"{GEMINI_STREAM}?alt=sse"
    assert seen.header("x-goog-api-key") == REAL_KEY

    (call,) = calls(relay)
    assert call.path == f"{GEMINI_STREAM}?alt=sse" and call.model == "gemini-2.5-flash"
    assert tokens(call) == (1000, 50, 100, 0) and call.stream
    # 900 × $0.30 + 100 × $0.03 + (20 + 30 thinking) × $2.50
    assert call.cost_usd == Decimal("0.000398")


def test_gemini_json_and_array_stream(make_relay: MakeRelay, upstream: FakeUpstream) -> None:
    path = "/v1beta/models/gemini-2.5-pro:generateContent"
    reply = Reply(chunks=[gemini_json("ok", input_tokens=100, output_tokens=10)])
    upstream.script(path, reply)
    chunks = [json.loads(gemini_sse("a b", input_tokens=8, output_tokens=2)[i][6:]) for i in (0, 1)]
    array = Reply(
        chunks=[b"[" + json.dumps(chunks[0]).encode(), b"," + json.dumps(chunks[1]).encode() + b"]"]
    )
    upstream.script(GEMINI_STREAM, array)
    relay, agent = make_relay("gemini")
    r, data = agent.call(path, {"contents": []})
    assert (r.status_code, data) == (200, reply.body)
    r, data = agent.call(GEMINI_STREAM, {"contents": []})
    assert (r.status_code, data) == (200, array.body)
    plain, streamed = calls(relay)
    assert tokens(plain) == (100, 10, 0, 0) and plain.cost_usd == Decimal("0.000225")
    assert tokens(streamed) == (8, 2, 0, 0) and streamed.stream


def test_stream_is_relayed_chunk_by_chunk(make_relay: MakeRelay, upstream: FakeUpstream) -> None:
    """The upstream holds the rest of its stream until the client has the first event."""
    gate = threading.Event()
    reply = Reply(chunks=anthropic_sse("a b", input_tokens=1), content_type=SSE, gate=gate)
    upstream.script(MESSAGES, reply)
    _, agent = make_relay("anthropic")
    body = json.dumps({"model": "claude-haiku-4-5", "stream": True}).encode()
    t0 = time.monotonic()
    with agent.http.stream("POST", MESSAGES, content=body, headers=AUTH["anthropic"]) as r:
        raw = r.iter_raw()
        first = next(raw)
        assert time.monotonic() - t0 < 5  # the upstream would wait 10 s without this
        assert not gate.is_set() and reply.chunks[0].startswith(first)
        gate.set()
        rest = b"".join(raw)
    assert first + rest == reply.body


# ---------------------------------------------------------------------- refusals and errors


def test_missing_or_wrong_dummy_token_is_401(make_relay: MakeRelay, upstream: FakeUpstream) -> None:
    relay, agent = make_relay("anthropic")
    body = {"model": "claude-haiku-4-5", "messages": []}
    status, error = agent.error(MESSAGES, body, auth=False)
    assert status == 401 and error["error"]["type"] == "authentication_error"
    assert error["error"]["message"].startswith("ptb relay:")
    status, _ = agent.error(MESSAGES, body, auth=False, headers={"x-api-key": "sk-guess"})
    assert status == 401
    status, _ = agent.error(MESSAGES, body, auth=False, headers={"x-api-key": REAL_KEY})
    assert status == 401
    assert upstream.seen == []
    assert [c.refused for c in calls(relay)] == ["auth"] * 3

    upstream.script(MESSAGES, Reply(chunks=[anthropic_json("ok")]))
    bearer = {"authorization": f"Bearer {DUMMY}"}
    r, _ = agent.call(MESSAGES, body, auth=False, headers=bearer)
    assert r.status_code == 200 and upstream.seen[-1].header("authorization") is None


def test_gemini_wrong_query_key_is_401(make_relay: MakeRelay, upstream: FakeUpstream) -> None:
    _, agent = make_relay("gemini")
    status, error = agent.error(GEMINI_STREAM + "?alt=sse&key=nope", {}, auth=False)
    assert status == 401 and error["error"]["status"] == "UNAUTHENTICATED"
    assert upstream.seen == []


def test_other_providers_and_unknown_paths_are_403(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    relay, agent = make_relay("anthropic")
    status, error = agent.error("/v1/responses", {"model": "gpt-5"})
    assert status == 403
    assert error["error"]["message"].startswith("ptb relay: this run may only call the anthropic")
    assert "openai endpoint" in error["error"]["message"]  # and shaped for the OpenAI client
    status, error = agent.error("/v1beta/models/gemini-2.5-pro:generateContent", {})
    assert (status, error["error"]["status"]) == (403, "PERMISSION_DENIED")
    status, error = agent.error("/v1/files", method="GET")
    assert (status, error["type"], error["error"]["type"]) == (403, "error", "permission_error")
    assert error["error"]["message"].startswith("ptb relay:")
    assert upstream.seen == []
    assert [c.refused for c in calls(relay)] == ["endpoint"] * 3
    assert relay.usage().refused_calls == 3 and relay.usage().calls == 0


def test_budget_holds_until_spent_then_refuses(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    usage = {"input_tokens": 100, "cache_read": 2000, "cache_write": 500, "output_tokens": 300}
    upstream.script(MESSAGES, Reply(chunks=[anthropic_json("ok", **usage)]))
    upstream.script(MESSAGES + "/count_tokens", Reply(chunks=[b'{"input_tokens": 1}']))
    relay, agent = make_relay("anthropic", budget="0.01")
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": []}  # holds $0.00168
    assert agent.call(MESSAGES, body)[0].status_code == 200  # $0 spent
    assert agent.call(MESSAGES, body)[0].status_code == 200  # $0.007275 spent
    r, data = agent.call(MESSAGES, body)  # $0.01455 spent: over
    assert r.status_code == 403 and r.headers["x-should-retry"] == "false"
    message = json.loads(data)["error"]["message"]
    assert message == "ptb relay: the run's API budget of $0.01 is spent ($0.0146 used)"
    assert agent.call(MESSAGES + "/count_tokens", body)[0].status_code == 200  # free
    assert len(upstream.seen) == 3

    refused = calls(relay)[2]
    assert (refused.refused, refused.status, refused.error) == ("budget", 403, message)
    total = relay.usage()
    assert (total.calls, total.refused_calls, total.budget_usd) == (3, 1, Decimal("0.01"))
    assert total.cost_usd == Decimal("0.014550")


def test_unpriced_model(make_relay: MakeRelay, upstream: FakeUpstream) -> None:
    upstream.script(MESSAGES, Reply(chunks=[anthropic_json("ok", input_tokens=5)]))
    body = {"model": "claude-mystery-9", "messages": []}
    relay, agent = make_relay("anthropic")
    r, _ = agent.call(MESSAGES, body)
    assert r.status_code == 200
    (call,) = calls(relay)
    assert (call.priced, call.cost_usd, call.input_tokens) == (False, 0, 5)
    assert relay.usage().unpriced_calls == 1

    budgeted, agent = make_relay("anthropic", budget=5)
    status, error = agent.error(MESSAGES, body)
    assert status == 403
    assert error["error"]["message"] == (
        "ptb relay: model 'claude-mystery-9' has no price, so the run's API budget of $5.00 "
        "cannot be enforced"
    )
    assert calls(budgeted)[-1].refused == "unpriced"
    assert len(upstream.seen) == 1


def test_upstream_errors_pass_through(make_relay: MakeRelay, upstream: FakeUpstream) -> None:
    error = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    upstream.script(MESSAGES, Reply(500, [error], chunked=False, headers={"x-request-id": "r1"}))
    relay, agent = make_relay("anthropic")
    r, data = agent.call(MESSAGES, {"model": "claude-haiku-4-5", "messages": []})
    assert (r.status_code, data, r.headers["x-request-id"]) == (500, error, "r1")
    echo = b'{"error": {"message": "Incorrect API key provided: ' + REAL_KEY.encode() + b'"}}'
    upstream.script(MESSAGES, Reply(401, [echo]))
    r, data = agent.call(MESSAGES, {"model": "claude-haiku-4-5", "messages": []})
    assert r.status_code == 401 and b"[redacted]" in data and REAL_KEY.encode() not in data
    first, _ = calls(relay)
    assert (first.status, first.refused, first.cost_usd) == (500, None, 0)
    assert first.error is not None and "Overloaded" in first.error
    assert relay.usage().failed_calls == 2


def test_upstream_down_is_502(make_relay: MakeRelay) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    relay, agent = make_relay("openai", base=f"http://127.0.0.1:{port}/v1")
    status, error = agent.error("/v1/responses", {"model": "gpt-5", "input": "x"})
    assert status == 502
    assert error["error"]["message"].startswith("ptb relay: upstream unreachable: ConnectError")
    (call,) = calls(relay)
    assert call.status == 502 and call.error is not None and "unreachable" in call.error


def test_models_list_passes(make_relay: MakeRelay, upstream: FakeUpstream) -> None:
    upstream.script("/v1/models", Reply(chunks=[b'{"data": []}']))
    relay, agent = make_relay("openai")
    r, data = agent.call("/v1/models", method="GET")
    assert (r.status_code, data) == (200, b'{"data": []}')
    assert calls(relay)[0].cost_usd == 0


def test_hop_by_hop_headers_are_dropped(make_relay: MakeRelay, upstream: FakeUpstream) -> None:
    upstream.script(MESSAGES, Reply(chunks=[anthropic_json("ok")]))
    _, agent = make_relay("anthropic")
    headers = {
        "proxy-authorization": "Basic abc",
        "connection": "keep-alive, x-hop",
        "x-hop": "1",
        "te": "trailers",
        "cookie": "a=b",
    }
    agent.call(MESSAGES, {"model": "claude-haiku-4-5"}, headers=headers)
    names = {k.lower() for k, _ in upstream.seen[-1].headers}
    assert not names & {"proxy-authorization", "x-hop", "te", "cookie", "authorization"}
    assert upstream.seen[-1].header("accept-encoding") == "identity"


def test_concurrent_calls_add_up_exactly(make_relay: MakeRelay, upstream: FakeUpstream) -> None:
    upstream.script(MESSAGES, Reply(chunks=[anthropic_json("ok", input_tokens=7, output_tokens=3)]))
    relay, agent = make_relay("anthropic")

    def work() -> None:
        for _ in range(5):
            assert agent.call(MESSAGES, {"model": "claude-opus-4-5"})[0].status_code == 200

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert relay.wait_idle()
    total = relay.usage()
    assert (total.calls, total.input_tokens, total.output_tokens) == (40, 280, 120)
    assert total.cost_usd == 40 * Decimal("0.00011")  # 7 × $5 + 3 × $25
    assert len(calls(relay)) == 40


def test_stop_cuts_a_hanging_stream_and_logs_it(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    gate = threading.Event()
    reply = Reply(chunks=anthropic_sse("a", input_tokens=3), content_type=SSE, gate=gate)
    upstream.script(MESSAGES, reply)
    relay, agent = make_relay("anthropic")
    body = json.dumps({"model": "claude-haiku-4-5", "stream": True}).encode()
    with agent.http.stream("POST", MESSAGES, content=body, headers=AUTH["anthropic"]) as r:
        raw = r.iter_raw()
        next(raw)
        t0 = time.monotonic()
        relay.stop(grace_s=0.3)
        assert time.monotonic() - t0 < 3
        with pytest.raises(httpx.HTTPError):
            b"".join(raw)
    gate.set()
    (call,) = calls(relay)
    assert call.error is not None and call.input_tokens == 3
    assert not relay.socket_path.exists()


def _raw(relay: Relay, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(relay.socket_path))
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_http10_client_and_chunked_request_body(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    reply = Reply(chunks=anthropic_sse("a b", input_tokens=4), content_type=SSE)
    upstream.script(MESSAGES, reply)
    relay, _ = make_relay("anthropic")
    body = b'{"model": "claude-haiku-4-5", "stream": true}'
    head = f"POST {MESSAGES} HTTP/1.0\r\nx-api-key: {DUMMY}\r\ncontent-length: {len(body)}\r\n"
    answer = _raw(relay, head.encode() + b"\r\n" + body)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"\r\n\r\n" + reply.body)

    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (5, body[:5], len(body) - 5, body[5:])
    head = (
        f"POST {MESSAGES} HTTP/1.1\r\nx-api-key: {DUMMY}\r\ntransfer-encoding: chunked\r\n"
        "connection: close\r\n\r\n"
    )
    answer = _raw(relay, head.encode() + chunked)
    assert answer.startswith(b"HTTP/1.1 200") and upstream.seen[-1].body == body
    assert [c.input_tokens for c in calls(relay)] == [4, 4]


# ---------------------------------------------------------------------- what calls in flight hold


def test_concurrent_calls_each_hold_their_most_so_only_one_fits(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    """Six calls start together under a budget that holds the most of one: one goes through
    (its stream held open upstream), five are refused; once it is charged, the next one fits."""
    gate = threading.Event()
    chunks = anthropic_sse("a b", input_tokens=10, output_tokens=20)  # $0.00011 on haiku
    upstream.script(MESSAGES, Reply(chunks=chunks, content_type=SSE, gate=gate))
    relay, agent = make_relay("anthropic", budget="0.008")
    body = {"model": "claude-haiku-4-5", "max_tokens": 1000, "stream": True, "messages": []}
    most = (len(json.dumps(body)) * 1 + 1000 * 5) * Decimal("1e-6")  # $1 in, $5 out: ~$0.0051
    assert most < Decimal("0.008") < 2 * most

    statuses: list[int] = []
    done = threading.Condition()
    start = threading.Barrier(6)

    def work() -> None:
        start.wait()
        r, _ = agent.call(MESSAGES, body)
        with done:
            statuses.append(r.status_code)
            done.notify_all()

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    with done:  # the admitted call is held upstream until the gate opens: the rest come first
        assert done.wait_for(lambda: len(statuses) == 5, timeout=15), statuses
    assert statuses == [403] * 5
    gate.set()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [403] * 5 and len(upstream.seen) == 1

    logged = calls(relay)
    refused = [c for c in logged if c.refused]
    assert [c.refused for c in refused] == ["budget"] * 5
    assert all(c.error and "held by calls in flight" in c.error for c in refused), refused
    (passed,) = [c for c in logged if not c.refused]
    assert passed.max_cost_usd == most and passed.cost_usd == Decimal("0.00011")
    assert not passed.priced_at_max
    # charged its actual cost, it no longer holds its most: another call fits
    assert agent.call(MESSAGES, body)[0].status_code == 200
    assert relay.wait_idle() and relay.usage().cost_usd == Decimal("0.00022")


def test_a_call_whose_most_does_not_fit_is_refused(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    """Under budget, nothing spent: a request with no output limit holds the model's largest."""
    relay, agent = make_relay("openai", budget="1")
    status, error = agent.error("/v1/responses", {"model": "gpt-5", "input": "x"})
    # 128K output tokens of gpt-5 at $10 per million: $1.28 > $1
    assert status == 403 and error["error"]["code"] == "ptb_relay_refused"
    assert error["error"]["message"].startswith("ptb relay: this call may cost up to $1.28")
    assert upstream.seen == [] and calls(relay)[0].refused == "budget"


# ---------------------------------------------------------------------- answers cut before usage

CUT = {
    # the upstream stream ends before its final usage event
    "anthropic": (MESSAGES, {"model": "claude-haiku-4-5", "max_tokens": 100, "stream": True},
                  anthropic_sse("a b", input_tokens=5, output_tokens=80)[:-2]),
    "openai": ("/v1/responses", {"model": "gpt-5-mini", "max_output_tokens": 100, "stream": True},
               responses_sse("a b", input_tokens=5, output_tokens=80)[:-1]),
    "gemini": ("/v1beta/models/gemini-2.5-flash:streamGenerateContent",
               {"contents": [], "generationConfig": {"maxOutputTokens": 100}},
               gemini_sse("a b c", input_tokens=5, output_tokens=80)[:-1]),
}  # fmt: skip


@pytest.mark.parametrize("provider", CUT)
def test_stream_ended_before_its_usage_is_charged_its_most(
    make_relay: MakeRelay, upstream: FakeUpstream, provider: str
) -> None:
    path, body, chunks = CUT[provider]
    upstream.script(path, Reply(chunks=chunks, content_type=SSE))
    relay, agent = make_relay(provider)
    r, data = agent.call(path, body)
    assert (r.status_code, data) == (200, b"".join(chunks))  # the client gets what came
    (call,) = calls(relay)
    price = relay.prices.lookup(call.model)
    assert price is not None and call.max_cost_usd == price.most(call.request_bytes, 100)
    assert call.priced_at_max and call.cost_usd == call.max_cost_usd > 0
    assert call.error in ("no usage in the response", "the answer ended before its final usage")
    assert '"priced_at_max":true' in relay.log_path.read_text()
    usage = relay.usage()
    assert (usage.priced_at_max_calls, usage.cost_usd) == (1, call.max_cost_usd)


def test_client_gone_before_the_usage_is_charged_the_most(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    """The agent hangs up after the first event: the relay stops reading before the usage."""
    gate = threading.Event()
    chunks = anthropic_sse(" ".join(["w"] * 200), input_tokens=5, output_tokens=900)
    upstream.script(MESSAGES, Reply(chunks=chunks, content_type=SSE, gate=gate))
    relay, agent = make_relay("anthropic")
    body = json.dumps({"model": "claude-haiku-4-5", "max_tokens": 1000, "stream": True})
    with agent.http.stream("POST", MESSAGES, content=body, headers=AUTH["anthropic"]) as r:
        next(r.iter_raw())
    gate.set()
    (call,) = calls(relay)
    assert call.error is not None and "client disconnected" in call.error
    assert call.priced_at_max and call.input_tokens == 5  # message_start came, message_delta not
    assert call.cost_usd == call.max_cost_usd == (len(body) + 1000 * 5) * Decimal("1e-6")


def test_complete_answers_are_charged_their_usage(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    """Whole streams and bodies in every format carry their final usage: never charged the most."""
    upstream.script(MESSAGES, Reply(chunks=anthropic_sse("a", output_tokens=3), content_type=SSE))
    relay, agent = make_relay("anthropic")
    agent.call(MESSAGES, {"model": "claude-haiku-4-5", "max_tokens": 10, "stream": True})
    upstream.script(GEMINI_STREAM, Reply(chunks=gemini_sse("a b"), content_type=SSE))
    gemini, gagent = make_relay("gemini")
    gagent.call(GEMINI_STREAM + "?alt=sse", {"contents": []})
    upstream.script("/v1/chat/completions", Reply(chunks=chat_sse("a b"), content_type=SSE))
    openai, oagent = make_relay("openai")
    oagent.call("/v1/chat/completions", {"model": "gpt-4.1", "stream": True, "messages": []})
    assert all(r.wait_idle() for r in (relay, gemini, openai))
    lines = [LlmCall.model_validate_json(x) for x in relay.log_path.read_text().splitlines()]
    assert len(lines) == 3 and not any(c.priced_at_max for c in lines), lines
    assert all(c.max_cost_usd and c.cost_usd < c.max_cost_usd for c in lines), lines


# ---------------------------------------------------------------------- provider-side tools

FUNCTION = {"name": "Bash", "description": "run", "input_schema": {"type": "object"}}
OPENAI_FUNCTION = {"type": "function", "name": "shell", "parameters": {"type": "object"}}
GEMINI_FUNCTIONS = {"functionDeclarations": [{"name": "run_shell_command"}]}
TOOLS = {
    "anthropic": (
        MESSAGES,
        {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [],
         "tools": [FUNCTION, {"type": "custom", **FUNCTION},
                   {"type": "web_search_20250305", "name": "web_search"},
                   {"type": "web_fetch_20250910", "name": "web_fetch"},
                   {"type": "code_execution_20250825", "name": "code_execution"}],
         "mcp_servers": [{"type": "url", "url": "https://mcp.example.com", "name": "x"}]},
        {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [],
         "tools": [FUNCTION, {"type": "custom", **FUNCTION}]},
        ["mcp_servers", "web_search_20250305", "web_fetch_20250910", "code_execution_20250825"],
        anthropic_json("ok"),
    ),
    "openai": (
        "/v1/responses",
        {"model": "gpt-5", "max_output_tokens": 10, "input": "x",
         "tools": [OPENAI_FUNCTION, {"type": "web_search"}, {"type": "web_search_preview"},
                   {"type": "file_search", "vector_store_ids": ["vs_1"]},
                   {"type": "code_interpreter", "container": {"type": "auto"}},
                   {"type": "computer_use_preview"}, {"type": "mcp", "server_url": "https://x"},
                   {"type": "image_generation"}, {"type": "custom", "name": "apply_patch"}]},
        {"model": "gpt-5", "max_output_tokens": 10, "input": "x",
         "tools": [OPENAI_FUNCTION, {"type": "custom", "name": "apply_patch"}]},
        ["web_search", "web_search_preview", "file_search", "code_interpreter",
         "computer_use_preview", "mcp", "image_generation"],
        responses_json("ok"),
    ),
    "chat": (
        "/v1/chat/completions",
        {"model": "gpt-4.1", "messages": [], "web_search_options": {},
         "tools": [{"type": "function", "function": {"name": "bash"}}]},
        {"model": "gpt-4.1", "messages": [],
         "tools": [{"type": "function", "function": {"name": "bash"}}]},
        ["web_search_options"],
        chat_json("ok"),
    ),
    "gemini": (
        "/v1beta/models/gemini-2.5-flash:generateContent",
        {"contents": [],
         "tools": [{**GEMINI_FUNCTIONS, "googleSearch": {}}, {"google_search_retrieval": {}},
                   {"urlContext": {}}, {"codeExecution": {}}]},
        {"contents": [], "tools": [GEMINI_FUNCTIONS]},
        ["googleSearch", "google_search_retrieval", "urlContext", "codeExecution"],
        gemini_json("ok"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", TOOLS)
@pytest.mark.parametrize("allowed", [False, True])
def test_provider_side_tools_are_stripped_and_logged(
    make_relay: MakeRelay, upstream: FakeUpstream, name: str, allowed: bool
) -> None:
    path, body, client_only, asked, answer = TOOLS[name]
    upstream.script(path, Reply(chunks=[answer]))
    provider = "openai" if name == "chat" else name
    relay, agent = make_relay(provider, allow_provider_tools=allowed)
    r, _ = agent.call(path, body)
    assert r.status_code == 200
    assert upstream.seen[-1].json() == (body if allowed else client_only)
    (call,) = calls(relay)
    assert (call.provider_tools, call.provider_tools_stripped) == (asked, not allowed)
    assert relay.usage().provider_tool_calls == 1


def test_a_request_of_provider_tools_only_loses_its_tool_choice(
    make_relay: MakeRelay, upstream: FakeUpstream
) -> None:
    upstream.script(MESSAGES, Reply(chunks=[anthropic_json("ok")]))
    relay, agent = make_relay("anthropic")
    web = {"type": "web_search_20250305", "name": "web_search"}
    body = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [], "tools": [web],
            "tool_choice": {"type": "tool", "name": "web_search"}}  # fmt: skip
    assert agent.call(MESSAGES, body)[0].status_code == 200
    assert upstream.seen[-1].json() == {
        "model": "claude-haiku-4-5",
        "max_tokens": 10,
        "messages": [],
    }
    plain = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [], "tools": [FUNCTION]}
    agent.call(MESSAGES, plain)
    assert upstream.seen[-1].body == json.dumps(plain).encode()  # nothing to strip: same bytes
    assert [c.provider_tools for c in calls(relay)] == [["web_search_20250305"], []]
    assert relay.usage().provider_tool_calls == 1


@pytest.mark.parametrize("allowed", [False, True])
def test_models_that_search_by_themselves_need_the_allowance(
    make_relay: MakeRelay, upstream: FakeUpstream, allowed: bool
) -> None:
    upstream.script("/v1/chat/completions", Reply(chunks=[chat_json("ok")]))
    relay, agent = make_relay("openai", allow_provider_tools=allowed)
    body = {"model": "gpt-4o-search-preview", "messages": []}
    r, data = agent.call("/v1/chat/completions", body)
    (call,) = calls(relay)
    assert call.provider_tools == ["model:gpt-4o-search-preview"]
    assert relay.usage().provider_tool_calls == 1
    if allowed:
        assert r.status_code == 200 and len(upstream.seen) == 1
        return
    assert r.status_code == 403 and upstream.seen == [] and call.refused == "provider_tool"
    assert "searches the web" in json.loads(data)["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "headers"),
    [
        # which "tools" would the provider read? The relay reads the last one.
        (b'{"model": "claude-haiku-4-5", "tools": [{"type": "web_search_20250305"}], '
         b'"tools": []}', {}),
        (b'["not", "an", "object"]', {}),
        (b'{"model": "claude-haiku-4-5"}', {"content-encoding": "gzip"}),
    ],
)  # fmt: skip
def test_requests_the_relay_cannot_read_as_the_provider_would_are_refused(
    make_relay: MakeRelay, upstream: FakeUpstream, raw: bytes, headers: dict[str, str]
) -> None:
    relay, agent = make_relay("anthropic")
    with agent.http.stream("POST", MESSAGES, content=raw, headers=AUTH["anthropic"] | headers) as r:
        data = b"".join(r.iter_raw())
    assert r.status_code == 400 and b"not one plain JSON object" in data
    assert upstream.seen == [] and calls(relay)[0].refused == "bad_request"
