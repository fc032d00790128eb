"""The API relay: an HTTP server on a unix socket between the agent's CLI and its provider.

It forwards only the run's provider, swaps the per-run dummy token for the real key, streams the
answer back byte for byte (SSE included, each chunk flushed as it arrives) while reading usage on
the side, prices each call, refuses calls once the budget is spent, and logs every request.

Under a budget each call holds, from its start until its usage is charged, the most it could cost
(every request byte a prompt token, plus its output limit), and starts only if that fits beside
what is spent and held by the calls in flight. An answer cut before its final usage is charged
that most. Provider-side tools (web search and fetch, code execution, MCP) would reach the
internet around the egress proxy: unless the run allows them they are stripped from requests, and
models that search by themselves are refused; every attempt is logged.

Refusals (other providers' endpoints, unknown paths, a spent budget, an unpriced model under a
budget) answer 403 with `x-should-retry: false`: the SDKs behind Claude Code, Codex, Gemini CLI
and OpenCode retry 408, 409, 429 and 5xx, never 403, and unlike 400 a 403 does not read as a
malformed prompt to fix. A missing or wrong dummy token answers 401.

Threads: `ThreadingMixIn` serves each connection in its own thread; upstream calls go through one
shared `httpx.Client`. The upstream is asked for `Accept-Encoding: identity` so that what the
client gets is exactly what the relay read.

Besides the meter, the relay keeps the request and response body of every forwarded LLM call
(`bodies.py`), next to the call log in `relay_bodies.jsonl` unless told otherwise: the record the
run's trajectory is built from, out of the agent's reach.
"""

from __future__ import annotations

import hmac
import json
import os
import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from posttrainbench.errors import ConfigError, PtbError
from posttrainbench.sandbox import unix_service
from posttrainbench.sandbox.relay.bodies import BodyCapture, BodyLog
from posttrainbench.sandbox.relay.calls import ApiUsage, CallLog, LlmCall, Refusal, Reservation
from posttrainbench.sandbox.relay.prices import PRICES_VAR, Price, load_prices
from posttrainbench.sandbox.relay.providers import WIRE_FORMATS, real_key, wire_format
from posttrainbench.sandbox.relay.wire import (
    Meter,
    SseParser,
    Usage,
    WireFormat,
    drop_query_param,
    upstream_url,
)

MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes, the last one a NUL
MAX_REQUEST_BYTES = 64 << 20
MAX_METERED_JSON = 32 << 20  # non-streamed bodies larger than this are passed on unmetered
# `read` is the longest silence between two chunks; a non-streamed answer of a long generation
# may take many minutes before its first byte.
UPSTREAM_TIMEOUT = httpx.Timeout(connect=30.0, read=1200.0, write=120.0, pool=120.0)
STOP_GRACE_S = 5.0
REDACTED = "[redacted]"

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never sent upstream: the client's credentials, and what httpx sets itself.
_NOT_FORWARDED = _HOP_BY_HOP | {
    "host",
    "content-length",
    "accept-encoding",
    "expect",
    "authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "cookie",
}
_NOT_RETURNED = _HOP_BY_HOP | {"content-length"}


def _usd(value: Decimal | float | int | str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        amount = Decimal("NaN")
    if not amount.is_finite() or amount < 0:
        raise ConfigError(
            f"API budget {value!r} is not an amount of dollars", "give a number ≥ 0, e.g. 20"
        )
    return amount


def money(amount: Decimal, places: int = 4) -> str:
    """$ amount with 2 decimals, or up to `places` where cents are not exact."""
    if amount == amount.quantize(Decimal("0.01")):
        return f"${amount:.2f}"
    return f"${amount.quantize(Decimal(1).scaleb(-places)).normalize():f}"


def _proxy_for(base: str, environ: Mapping[str, str]) -> str | None:
    """The proxy the harness environment names for `base`, honouring NO_PROXY."""
    env = {k.lower(): v for k, v in environ.items() if k.lower().endswith("_proxy")}
    parts = urlsplit(base)
    proxy = env.get(f"{parts.scheme}_proxy") or env.get("all_proxy")
    host = (parts.hostname or "").lower()
    for entry in env.get("no_proxy", "").split(","):
        name = entry.strip().lower().rsplit(":", 1)[0].lstrip(".")
        if name == "*" or (name and (host == name or host.endswith("." + name))):
            return None
    return proxy or None


@dataclass
class _Exchange:
    """What one request did, filled in as it goes; becomes an `LlmCall`."""

    started_at: datetime
    t0: float
    method: str
    path: str
    provider: str
    model: str | None = None
    stream: bool = False
    status: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: Decimal = Decimal(0)
    priced: bool = True
    metered: bool = True
    max_cost: Decimal | None = None
    held: Decimal = Decimal(0)  # reserved against the budget until the call is logged
    priced_at_max: bool = False
    provider_tools: list[str] = field(default_factory=list)
    provider_tools_stripped: bool = False
    request_bytes: int = 0
    response_bytes: int = 0
    first_byte_s: float | None = None
    refused: Refusal | None = None
    error: str | None = None
    headers_sent: bool = False
    request_body: bytes | None = None  # set once a metered call is forwarded: its bodies are kept
    capture: BodyCapture | None = None

    def record(self) -> LlmCall:
        return LlmCall(
            **self.usage.model_dump(),
            started_at=self.started_at,
            duration_s=round(time.monotonic() - self.t0, 6),
            first_byte_s=None if self.first_byte_s is None else round(self.first_byte_s, 6),
            provider=self.provider,
            method=self.method,
            path=self.path,
            model=self.model,
            stream=self.stream,
            status=self.status,
            cost_usd=self.cost_usd,
            priced=self.priced,
            metered=self.metered,
            max_cost_usd=self.max_cost,
            priced_at_max=self.priced_at_max,
            provider_tools=self.provider_tools,
            provider_tools_stripped=self.provider_tools_stripped,
            request_bytes=self.request_bytes,
            response_bytes=self.response_bytes,
            refused=self.refused,
            error=self.error,
        )


class _SideReader:
    """Feeds a copy of the response body to the meter, without ever holding up the client."""

    def __init__(
        self, meter: Meter, sse: bool, encoding: str, capture: BodyCapture | None = None
    ) -> None:
        self.meter = meter
        self.capture = capture
        self.error: str | None = None
        self._decoder: Any = None
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            self.error = f"usage unreadable: content-encoding {encoding}"
        self._sse = SseParser(self._on_event) if sse else None
        self._json = bytearray()

    def feed(self, chunk: bytes) -> None:
        if self.error:
            return
        try:
            data = self._decoder.decompress(chunk) if self._decoder else chunk
            if self.capture is not None:
                self.capture.feed(data)
            if self._sse is not None:
                self._sse.feed(data)
            elif len(self._json) + len(data) <= MAX_METERED_JSON:
                self._json += data
            else:
                self.error = "usage unreadable: response too large"
        except Exception as e:  # metering must never break the pass-through
            self.error = f"usage unreadable: {type(e).__name__}: {e}"

    def close(self) -> None:
        if self.error:
            return
        try:
            if self._sse is not None:
                self._sse.close()
            elif self._json:
                self.meter.body(json.loads(self._json))
        except ValueError:
            self.error = "usage unreadable: the body is not JSON"
        except Exception as e:
            self.error = f"usage unreadable: {type(e).__name__}: {e}"

    def _on_event(self, name: str, data: str) -> None:
        if "usage" not in data:  # every provider's usage field has it in its name
            return
        try:
            parsed = json.loads(data)
        except ValueError:
            return  # e.g. "[DONE]"
        self.meter.event(name, parsed)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, path: str, relay: Relay) -> None:
        self.relay = relay
        self.connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(path, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def open_connections(self) -> list[socket.socket]:
        with self._conn_lock:
            return list(self.connections)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ptb-relay"

    def _dispatch(self) -> None:
        cast(_Server, self.server).relay._serve(self)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _dispatch

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every request is logged as an LlmCall

    def address_string(self) -> str:
        return "relay-client"


class Relay:
    """One run's API relay. `start()` binds the socket and serves in a background thread."""

    def __init__(
        self,
        provider: str,
        socket_path: Path,
        log_path: Path,
        dummy_token: str,
        *,
        budget_usd: Decimal | float | int | str | None = None,
        prices: Path | None = None,
        environ: Mapping[str, str] | None = None,
        allow_provider_tools: bool = False,
        bodies_path: Path | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.format: WireFormat = wire_format(provider)
        self.provider = provider
        self.socket_path = Path(socket_path)
        self.log_path = Path(log_path)
        self.budget_usd = _usd(budget_usd)
        self.allow_provider_tools = allow_provider_tools
        self._key = real_key(provider, env)
        if not dummy_token or dummy_token.strip() != dummy_token:
            raise ConfigError("the relay's dummy token is empty or has spaces", "pass a token")
        if hmac.compare_digest(dummy_token.encode(), self._key.encode()):
            raise ConfigError("the relay's dummy token equals the real API key", "pass a new one")
        self.dummy_token = dummy_token
        self._dummy = dummy_token.encode()
        self.base_url = env.get(self.format.base_var, "").strip() or self.format.default_base
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"{self.format.base_var}={self.base_url!r} is not an http(s) URL",
                f"unset it to use {self.format.default_base}",
            )
        self._proxy = _proxy_for(self.base_url, env)
        if len(os.fsencode(self.socket_path)) > MAX_SOCKET_PATH:
            raise ConfigError(
                f"relay socket path {self.socket_path} is over {MAX_SOCKET_PATH} bytes",
                "put the socket in a short directory, e.g. one made by tempfile.mkdtemp()",
            )
        price_file = prices or (Path(env[PRICES_VAR]) if env.get(PRICES_VAR) else None)
        self.prices = load_prices(price_file)
        totals = ApiUsage(
            provider=provider, budget_usd=self.budget_usd, prices_as_of=self.prices.as_of
        )
        self._log = CallLog(self.log_path, totals)
        self.bodies_path = bodies_path or self.log_path.with_name("relay_bodies.jsonl")
        self._bodies = BodyLog(self.bodies_path, (self._key, dummy_token))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._inflight = 0
        self._upstreams: set[socket.socket] = set()  # sockets of upstream answers being read
        self._cond = threading.Condition()

    @property
    def proxy(self) -> str | None:
        """The proxy the harness environment names for the upstream (NO_PROXY honoured)."""
        return self._proxy

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Relay:
        if self._server is not None:
            raise RuntimeError("relay already started")
        self._client = httpx.Client(
            timeout=UPSTREAM_TIMEOUT,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            trust_env=False,
            proxy=self._proxy,
            follow_redirects=False,
        )
        try:
            self._server, self._thread = unix_service.serve(
                self.socket_path, lambda path: _Server(path, self), f"relay-{self.provider}"
            )
        except PtbError:
            self._client.close()
            raise
        return self

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop listening, give calls in flight `grace_s` to finish, then cut the rest."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        with self._cond:
            self._cond.wait_for(lambda: self._inflight == 0, timeout=grace_s)
        with self._cond:
            upstreams = list(self._upstreams)
        for conn in [*server.open_connections(), *upstreams]:
            with suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        with self._cond:
            self._cond.wait_for(lambda: self._inflight == 0, timeout=grace_s)
        if self._client is not None:
            self._client.close()
        if self._thread is not None:
            self._thread.join(timeout=grace_s)
        self.socket_path.unlink(missing_ok=True)

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def wait_idle(self, timeout_s: float = 5.0) -> bool:
        """Wait until no request is in flight (every answered call is logged); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._inflight == 0, timeout=timeout_s)

    def usage(self) -> ApiUsage:
        """The run's totals so far (a copy)."""
        return self._log.totals()

    # ------------------------------------------------------------------ requests

    @contextmanager
    def _tracking(self) -> Iterator[None]:
        with self._cond:
            self._inflight += 1
        try:
            yield
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _redact(self, text: str) -> str:
        return text.replace(self._key, REDACTED)

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        query = drop_query_param(split.query, "key")
        x = _Exchange(
            started_at=datetime.now(UTC),
            t0=time.monotonic(),
            method=h.command,
            path=split.path + (f"?{query}" if query else ""),
            provider=self.provider,
        )
        with self._tracking():
            try:
                self._exchange(h, x, split.path, split.query)
            except Exception as e:  # a relay bug: answer and log it, keep serving
                x.error = self._redact(f"relay error: {type(e).__name__}: {e}")
                h.close_connection = True
                if not x.headers_sent:
                    message = "ptb relay: internal error (see the run's llm_calls.jsonl)"
                    self._reply(h, x, 500, self.format.error_body(500, message))
            finally:
                self._keep_bodies(x)
                self._log.add(x.record(), release=x.held)

    def _keep_bodies(self, x: _Exchange) -> None:
        if x.request_body is None:
            return
        try:
            self._bodies.add(
                started_at=x.started_at, provider=x.provider, method=x.method, path=x.path,
                status=x.status, stream=x.stream, request=x.request_body, response=x.capture,
            )  # fmt: skip
        except Exception as e:  # the call is logged anyway, saying its bodies are missing
            note = self._redact(f"bodies not recorded: {type(e).__name__}: {e}")
            x.error = f"{x.error}; {note}" if x.error else note

    def _exchange(self, h: BaseHTTPRequestHandler, x: _Exchange, path: str, query: str) -> None:
        fmt = self.format
        body = self._read_body(h)
        if body is None:
            message = f"ptb relay: malformed request or body over {MAX_REQUEST_BYTES} bytes"
            h.close_connection = True
            return self._refuse(h, x, 400, "bad_request", message)
        x.request_bytes = len(body)
        hit = fmt.route(h.command, path)
        if hit is None:
            return self._refuse_endpoint(h, x, path)
        route, match = hit
        headers = {k.lower(): v for k, v in h.headers.items()}
        tokens = fmt.client_tokens(headers, query)
        if not tokens or not all(hmac.compare_digest(t.encode(), self._dummy) for t in tokens):
            message = "ptb relay: missing or wrong API key; use the key the harness set"
            return self._refuse(h, x, 401, "auth", message)
        parsed = _json_or_none(body)
        x.model = fmt.model(match, parsed)
        x.stream = fmt.is_stream(match, parsed, query)
        price: Price | None = None
        if route.metered:
            encoding = headers.get("content-encoding", "identity").strip().lower()
            if not isinstance(parsed, dict) or encoding != "identity":
                message = "ptb relay: the request body is not one plain JSON object"
                return self._refuse(h, x, 400, "bad_request", message)
            stripped, x.provider_tools = fmt.provider_tools(match, parsed)
            searches = fmt.searches(x.model)
            if searches:
                x.provider_tools.append(f"model:{x.model}")
            if not self.allow_provider_tools:
                if searches:
                    message = (
                        f"ptb relay: model {x.model!r} searches the web, and this run does not "
                        "allow provider-side tools"
                    )
                    return self._refuse(h, x, 403, "provider_tool", message)
                x.provider_tools_stripped = bool(x.provider_tools)
                if x.provider_tools:
                    parsed = stripped
            if (new := fmt.prepare(match, parsed)) is not None:
                parsed = new
            if new is not None or x.provider_tools_stripped:
                body = json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode()
            price = self.prices.lookup(x.model)
            x.priced = price is not None
            if price is not None:
                default = price.max_output or fmt.default_max_output
                x.max_cost = price.most(len(body), fmt.max_output(match, parsed, default))
            if self.budget_usd is not None:
                if price is None or x.max_cost is None:
                    message = (
                        f"ptb relay: model {x.model!r} has no price, so the run's API budget of "
                        f"{money(self.budget_usd)} cannot be enforced"
                    )
                    return self._refuse(h, x, 403, "unpriced", message)
                held = self._log.reserve(x.max_cost, self.budget_usd)
                if not held.fits:
                    return self._refuse(
                        h, x, 403, "budget", self._over(x.max_cost, held, self.budget_usd)
                    )
                x.held = x.max_cost
        self._forward(h, x, path, query, body, route.metered, price)

    def _over(self, most: Decimal, held: Reservation, budget_usd: Decimal) -> str:
        budget = money(budget_usd)
        if held.spent >= budget_usd:
            return (
                f"ptb relay: the run's API budget of {budget} is spent ({money(held.spent)} used)"
            )
        left = budget_usd - held.spent - held.held
        return (
            f"ptb relay: this call may cost up to {money(most)}, more than the "
            f"{money(max(left, Decimal(0)))} left of the run's API budget of {budget} "
            f"({money(held.spent)} spent, {money(held.held)} held by calls in flight); "
            "ask for fewer output tokens or send a shorter request"
        )

    def _refuse_endpoint(self, h: BaseHTTPRequestHandler, x: _Exchange, path: str) -> None:
        owner = next(
            (f for f in WIRE_FORMATS.values() if f is not self.format and f.route(h.command, path)),
            None,
        )
        if owner is not None:
            message = (
                f"ptb relay: this run may only call the {self.provider} API; "
                f"{h.command} {path} is a {owner.name} endpoint"
            )
        else:
            message = f"ptb relay: {h.command} {path} is not a {self.provider} endpoint it forwards"
        self._refuse(h, x, 403, "endpoint", message, owner)

    def _refuse(
        self,
        h: BaseHTTPRequestHandler,
        x: _Exchange,
        status: int,
        reason: Refusal,
        message: str,
        shape: WireFormat | None = None,
    ) -> None:
        x.refused, x.error = reason, message
        body = (shape or self.format).error_body(status, message)
        self._reply(h, x, status, body, {"x-should-retry": "false"})

    def _reply(
        self,
        h: BaseHTTPRequestHandler,
        x: _Exchange,
        status: int,
        body: bytes,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        x.status = status
        try:
            h.send_response_only(status)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(body)))
            for name, value in (extra or {}).items():
                h.send_header(name, value)
            h.end_headers()
            x.headers_sent = True
            h.wfile.write(body)
            x.response_bytes = len(body)
        except OSError:
            x.error = (x.error or "") + " (client disconnected)"
            h.close_connection = True

    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes | None:
        if "chunked" in h.headers.get("transfer-encoding", "").lower():
            return _read_chunked(h)
        try:
            length = int(h.headers.get("content-length") or 0)
        except ValueError:
            return None
        if not 0 <= length <= MAX_REQUEST_BYTES:
            return None
        data = h.rfile.read(length)
        return data if len(data) == length else None

    # ------------------------------------------------------------------ upstream

    def _forward(
        self,
        h: BaseHTTPRequestHandler,
        x: _Exchange,
        path: str,
        query: str,
        body: bytes,
        metered: bool,
        price: Price | None,
    ) -> None:
        fmt = self.format
        client = self._client
        if client is None:
            raise RuntimeError("relay not started")
        if metered:
            x.request_body, x.capture = body, BodyCapture(self._bodies.max_body)
        url = upstream_url(self.base_url, path)
        if q := fmt.forward_query(query):
            url += "?" + q
        listed = {t.strip().lower() for t in h.headers.get("connection", "").split(",")}
        headers = [
            (k, v)
            for k, v in h.headers.items()
            if k.lower() not in _NOT_FORWARDED and k.lower() not in listed
        ]
        headers += [*fmt.upstream_auth(self._key).items(), ("accept-encoding", "identity")]
        try:
            request = client.build_request(h.command, url, headers=headers, content=body)
            response = client.send(request, stream=True)
        except httpx.HTTPError as e:
            message = self._redact(f"ptb relay: upstream unreachable: {type(e).__name__}: {e}")
            x.error = message
            return self._reply(h, x, 502, fmt.error_body(502, message))
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._cond:
            if sock is not None:
                self._upstreams.add(sock)
        try:
            x.status = response.status_code
            if response.status_code >= 400:
                self._pass_error(h, x, response)
            else:
                self._pass_body(h, x, response, metered, price)
        finally:
            with self._cond:
                self._upstreams.discard(sock)
            response.close()

    def _start_reply(
        self, h: BaseHTTPRequestHandler, response: httpx.Response, length: str | None
    ) -> None:
        h.send_response_only(response.status_code)
        listed = {t.strip().lower() for t in response.headers.get("connection", "").split(",")}
        for name, value in response.headers.multi_items():
            if name.lower() not in _NOT_RETURNED and name.lower() not in listed:
                h.send_header(name, value)
        if length is not None:
            h.send_header("content-length", length)
        elif h.request_version == "HTTP/1.0":
            h.send_header("connection", "close")
        else:
            h.send_header("transfer-encoding", "chunked")
        h.end_headers()

    def _pass_error(
        self, h: BaseHTTPRequestHandler, x: _Exchange, response: httpx.Response
    ) -> None:
        """Upstream errors go back unchanged, except that the real key, if echoed, is redacted."""
        try:
            data = b"".join(response.iter_raw())
        except httpx.HTTPError as e:
            message = self._redact(f"ptb relay: upstream unreachable: {type(e).__name__}: {e}")
            x.error = message
            return self._reply(h, x, 502, self.format.error_body(502, message))
        data = data.replace(self._key.encode(), REDACTED.encode())
        if x.capture is not None:
            x.capture.feed(data)
        snippet = data[:300].decode("utf-8", errors="replace")
        x.error = self._redact(f"upstream answered {response.status_code}: {snippet}")
        try:
            self._start_reply(h, response, str(len(data)))
            x.headers_sent = True
            h.wfile.write(data)
            x.response_bytes = len(data)
        except OSError:
            x.error += " (client disconnected)"
            h.close_connection = True

    def _pass_body(
        self,
        h: BaseHTTPRequestHandler,
        x: _Exchange,
        response: httpx.Response,
        metered: bool,
        price: Price | None,
    ) -> None:
        length = response.headers.get("content-length")
        chunked = length is None and h.request_version != "HTTP/1.0"
        if length is None and not chunked:
            h.close_connection = True  # an HTTP/1.0 client reads the body up to the close
        content_type = response.headers.get("content-type", "").lower()
        encoding = response.headers.get("content-encoding", "").strip().lower()
        sse = content_type.startswith("text/event-stream")
        side = _SideReader(self.format.meter(), sse, encoding, x.capture)
        try:
            self._start_reply(h, response, length)
            x.headers_sent = True
        except OSError:
            x.error = "client disconnected"
            h.close_connection = True
            return
        complete = False
        try:
            for chunk in response.iter_raw():
                if not chunk:
                    continue
                if x.first_byte_s is None:
                    x.first_byte_s = time.monotonic() - x.t0
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                x.response_bytes += len(chunk)
                side.feed(chunk)
            if chunked:
                h.wfile.write(b"0\r\n\r\n")
            complete = True
        except httpx.HTTPError as e:
            x.error = self._redact(f"upstream stream broke: {type(e).__name__}: {e}")
        except OSError:
            x.error = "client disconnected"
        if not complete:
            h.close_connection = True  # the client sees a cut stream, not a short complete one
        side.close()
        if metered:
            x.usage = side.meter.usage
            x.metered = side.meter.seen
            if not side.meter.seen:
                x.error = x.error or side.error or "no usage in the response"
            if price is not None:
                x.cost_usd = price.cost(x.usage)
                if not side.meter.final and x.max_cost is not None:
                    x.cost_usd = max(x.cost_usd, x.max_cost)
                    x.priced_at_max = True
                    x.error = x.error or "the answer ended before its final usage"


def _json_or_none(body: bytes) -> Any:
    """The body parsed, or None where it is empty, not JSON, or has an object with a key twice
    (which the relay and the provider might read differently)."""
    if not body:
        return None
    try:
        return json.loads(body, object_pairs_hook=_unique)
    except ValueError:
        return None


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("a key appears twice")
    return obj


def _read_chunked(h: BaseHTTPRequestHandler) -> bytes | None:
    data = bytearray()
    while True:
        line = h.rfile.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            return None
        if size == 0:
            while h.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(data)
        if len(data) + size > MAX_REQUEST_BYTES:
            return None
        chunk = h.rfile.read(size)
        if len(chunk) != size:
            return None
        data += chunk
        h.rfile.readline(1024)
