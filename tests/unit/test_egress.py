"""The egress proxy on loopback: policy decisions, tunnels, plain HTTP, the log and its summary.

No test reaches the internet: upstreams are local servers, and names outside them are either
denied by name before any lookup or answered by a fake resolver.
"""

from __future__ import annotations

import http.server
import ipaddress
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from posttrainbench.errors import ConfigError
from posttrainbench.sandbox.egress import (
    DEFAULT_ALLOW_HOSTS,
    EgressEvent,
    EgressPolicy,
    EgressProxy,
    is_internal,
    parse_allow_host,
    read_events,
    resolve_host,
)

BLOB = os.urandom(300_000)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _Http(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def _record(self, body: bytes = b"") -> None:
        self.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})

    def do_GET(self) -> None:
        self._record()
        self.send_response(200)
        self.send_header("Content-Length", str(len(BLOB)))
        self.end_headers()
        self.wfile.write(BLOB)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._record(body)
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[::-1])

    def log_message(self, *args: object) -> None:
        pass


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False


def _serve(server: socketserver.TCPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield int(server.socket.getsockname()[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    yield from _serve(_EchoServer(("127.0.0.1", 0), _Echo))


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    yield from _serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Http))


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer."""
    path = Path(tempfile.mkdtemp(prefix="ptb-egress-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


ProxyFactory = Callable[..., EgressProxy]


@pytest.fixture
def proxy_for(short_dir: Path) -> Iterator[ProxyFactory]:
    started: list[EgressProxy] = []

    def make(mode: str = "allowlist", allow: list[str] | None = None, **kw: Any) -> EgressProxy:
        policy = EgressPolicy.model_validate({"mode": mode, "allow_hosts": allow or []})
        n = len(started)
        proxy = EgressProxy(policy, short_dir / f"p{n}.sock", short_dir / f"egress{n}.jsonl", **kw)
        started.append(proxy.start())
        return proxy

    yield make
    for proxy in started:
        proxy.stop()


def dial(proxy: EgressProxy) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(proxy.socket_path))
    return sock


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    return b"".join(chunks)


def ask(proxy: EgressProxy, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send one request and end it; (status, body) of the whole answer."""
    with dial(proxy) as sock:
        sock.sendall(head.encode() + body)
        sock.shutdown(socket.SHUT_WR)
        answer = read_all(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def connect(proxy: EgressProxy, target: str) -> tuple[int, bytes]:
    return ask(proxy, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")


def events(proxy: EgressProxy, n: int) -> list[EgressEvent]:
    """The log once it holds n events (tunnels are logged when their handler ends)."""
    deadline = time.monotonic() + 5
    while len(got := read_events(proxy.log_path)) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(got) == n, got
    return got


def test_connect_tunnels_both_ways_and_counts_bytes(
    proxy_for: ProxyFactory, echo_port: int
) -> None:
    proxy = proxy_for(allow=[f"127.0.0.1:{echo_port}"])
    payload = os.urandom(200_000)
    with dial(proxy) as sock:
        # The first bytes ride in the same packet as the CONNECT head; they must not be lost.
        sock.sendall(f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\n".encode() + payload[:10])
        assert sock.recv(39) == b"HTTP/1.1 200 Connection established\r\n\r\n"
        sock.sendall(payload[10:])
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock) == payload
    (event,) = events(proxy, 1)
    assert (event.decision, event.method, event.host, event.port) == (
        "allowed", "CONNECT", "127.0.0.1", echo_port
    )  # fmt: skip
    assert (event.bytes_up, event.bytes_down) == (len(payload), len(payload))
    assert event.status == 200 and event.address == "127.0.0.1" and event.error is None
    assert event.path is None and event.duration_s > 0


def test_connect_to_denied_host_gets_403_and_is_logged(proxy_for: ProxyFactory) -> None:
    proxy = proxy_for()
    status, body = connect(proxy, "example.com:443")
    assert status == 403
    assert body.decode().splitlines()[0] == (
        "ptb egress: example.com is not allowed by the run's network policy (allowlist);"
        " ask for it with --allow-host"
    )
    (event,) = events(proxy, 1)
    assert event.decision == "denied" and event.status == 403
    assert event.reason == "example.com is not in the allowlist"
    assert event.bytes_up == event.bytes_down == 0


@pytest.mark.parametrize("mode", ["open", "allowlist"])
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "169.254.169.254", "0.0.0.0"])
def test_internal_addresses_are_denied(
    proxy_for: ProxyFactory, echo_port: int, mode: str, host: str
) -> None:
    proxy = proxy_for(mode)
    assert connect(proxy, f"{host}:{echo_port}")[0] == 403
    assert events(proxy, 1)[0].decision == "denied"


@pytest.mark.parametrize("mode", ["open", "allowlist"])
@pytest.mark.parametrize("entry", ["localhost:{port}", "127.0.0.1:{port}", "LocalHost:{port}"])
def test_internal_address_listed_exactly_is_allowed(
    proxy_for: ProxyFactory, echo_port: int, mode: str, entry: str
) -> None:
    proxy = proxy_for(mode, [entry.format(port=echo_port)])
    host = entry.split(":")[0]
    assert connect(proxy, f"{host}:{echo_port}")[0] == 200
    assert events(proxy, 1)[0].decision == "allowed"


def test_listed_internal_address_admits_only_its_port(
    proxy_for: ProxyFactory, echo_port: int
) -> None:
    proxy = proxy_for("open", ["127.0.0.1:1", "*.localhost", "127.0.0.1"])
    assert connect(proxy, f"127.0.0.1:{echo_port}")[0] == 403


def test_wildcard_entry_never_opens_an_internal_address(proxy_for: ProxyFactory) -> None:
    proxy = proxy_for(allow=["*.internal"], resolver=lambda host, port: ["10.0.0.1"])
    status, body = connect(proxy, "svc.internal:443")
    assert status == 403 and b"10.0.0.1" in body


def test_allowed_name_resolving_to_loopback_is_denied(
    proxy_for: ProxyFactory, echo_port: int
) -> None:
    calls: list[str] = []
    answers = {
        "huggingface.co": ["127.0.0.1"],
        "cdn-lfs.hf.co": ["93.184.216.34", "10.1.2.3"],  # every address is checked
        "pypi.org": ["::ffff:127.0.0.1"],
        "echo.test": ["127.0.0.1"],
    }

    def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[host]

    proxy = proxy_for(allow=[f"echo.test:{echo_port}"], resolver=resolver)
    for target in ("huggingface.co:443", "cdn-lfs.hf.co:443", "pypi.org:443"):
        status, body = connect(proxy, target)
        assert status == 403 and b"loopback, private or link-local" in body
    # A name the run listed may resolve to loopback; it is resolved once and that address used.
    assert connect(proxy, f"echo.test:{echo_port}")[0] == 200
    logged = events(proxy, 4)
    assert [e.decision for e in logged] == ["denied"] * 3 + ["allowed"]
    assert logged[0].reason == (
        "huggingface.co resolves to 127.0.0.1, a loopback, private or link-local address"
    )
    assert logged[3].address == "127.0.0.1"
    assert calls == ["huggingface.co", "cdn-lfs.hf.co", "pypi.org", "echo.test"]


def test_port_not_allowed_is_denied(proxy_for: ProxyFactory, echo_port: int) -> None:
    proxy = proxy_for(allow=["127.0.0.1"])
    assert connect(proxy, f"127.0.0.1:{echo_port}")[0] == 403
    assert events(proxy, 1)[0].reason == f"port {echo_port} is not allowed for 127.0.0.1"


def test_mode_none_denies_everything(proxy_for: ProxyFactory, echo_port: int) -> None:
    proxy = proxy_for("none", [f"127.0.0.1:{echo_port}"])
    assert connect(proxy, f"127.0.0.1:{echo_port}")[0] == 403
    assert events(proxy, 1)[0].reason == "the run has no network access"


def test_name_rules() -> None:
    policy = EgressPolicy(allow_hosts=["*.x.org", "*.y.org:8443", "Z.org:22"])
    admitted = [
        ("a.x.org", 443), ("a.b.x.org", 80), ("A.X.ORG", 443), ("a.y.org", 8443), ("z.org", 22),
        ("cdn-lfs.huggingface.co", 443), ("cdn-lfs-us-1.hf.co", 443), ("hf.co", 443),
        ("cas-bridge.xethub.hf.co", 443), ("transfer.xethub.hf.co", 443), ("huggingface.co", 80),
        ("pypi.org", 443), ("files.pythonhosted.org", 443), ("github.com", 443),
        ("codeload.github.com", 443), ("api.github.com", 443),
        ("objects.githubusercontent.com", 443), ("raw.githubusercontent.com", 443),
    ]  # fmt: skip
    refused = [
        ("x.org", 443), ("evilx.org", 443), ("x.org.evil.com", 443), ("a.x.org", 22),
        ("a.y.org", 443), ("z.org", 443), ("pythonhosted.org", 443), ("github.io", 443),
        ("huggingface.co.evil.com", 443), ("notpypi.org", 443), ("hf.co", 8080),
    ]  # fmt: skip
    for host, port in admitted:
        assert policy.check_name(host, port) is None, (host, port)
    for host, port in refused:
        assert policy.check_name(host, port) is not None, (host, port)
    assert EgressPolicy(mode="open").check_name("anything.example", 6000) is None
    assert "*.hf.co" in DEFAULT_ALLOW_HOSTS and "*.huggingface.co" in DEFAULT_ALLOW_HOSTS


def test_is_internal() -> None:
    internal = ["127.0.0.2", "::1", "10.0.0.1", "172.16.5.4", "172.31.255.255", "192.168.1.1",
                "169.254.169.254", "fd00::1", "fc00::1", "fe80::1", "0.0.0.0", "::",
                "100.100.100.200", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "224.0.0.1"]  # fmt: skip
    public = ["8.8.8.8", "172.32.0.1", "2606:4700:4700::1111", "18.239.50.1"]
    assert all(is_internal(ipaddress.ip_address(a)) for a in internal)
    assert not any(is_internal(ipaddress.ip_address(a)) for a in public)
    assert resolve_host("127.0.0.1", 80) == ["127.0.0.1"]


def test_parse_allow_host() -> None:
    assert parse_allow_host("Example.ORG") == "example.org"
    assert parse_allow_host(" *.Example.org:8443 ") == "*.example.org:8443"
    assert parse_allow_host("10.0.0.5:8080") == "10.0.0.5:8080"
    assert parse_allow_host("[::1]:8080") == "[::1]:8080"
    assert parse_allow_host("::1") == "[::1]"
    assert parse_allow_host("host.") == "host"
    bad = ["", "  ", "exa mple.org", "https://example.org", "example.org/path", "user@host",
           "example.org:0", "example.org:http", "example.org:70000", "*", "*.org.*", "a.*.org",
           "*.", "-bad.org", "exa_mple..org", "*.10.0.0.1", "[::1", "[::1]x"]  # fmt: skip
    for text in bad:
        with pytest.raises(ConfigError) as info:
            parse_allow_host(text)
        assert info.value.hint and "\n" not in info.value.message, text
    with pytest.raises(ValueError):
        EgressPolicy(allow_hosts=["https://x.org"])
    assert EgressPolicy(allow_hosts=["X.org", "x.org"]).allow_hosts == ["x.org"]


def test_plain_http_is_forwarded_with_body_intact(proxy_for: ProxyFactory, http_port: int) -> None:
    proxy = proxy_for(allow=[f"127.0.0.1:{http_port}"])
    _Http.seen.clear()
    head = (
        f"GET http://127.0.0.1:{http_port}/blob?q=1 HTTP/1.1\r\nHost: ignored\r\n"
        "Proxy-Connection: keep-alive\r\nX-Keep: yes\r\n\r\n"
    )
    assert ask(proxy, head) == (200, BLOB)
    post = f"POST http://127.0.0.1:{http_port}/up HTTP/1.1\r\nContent-Length: 5\r\n\r\n"
    assert ask(proxy, post, b"hello" + b"SMUGGLED") == (201, b"olleh")
    get, posted = _Http.seen
    assert get["path"] == "/blob?q=1" and get["headers"]["X-Keep"] == "yes"
    assert get["headers"]["Host"] == f"127.0.0.1:{http_port}"
    assert get["headers"]["Connection"] == "close" and "Proxy-Connection" not in get["headers"]
    assert posted["body"] == b"hello"
    first, second = events(proxy, 2)
    assert (first.method, first.path, first.status) == ("GET", "/blob?q=1", 200)
    assert first.bytes_down > len(BLOB) and first.bytes_up > 0
    assert (second.method, second.path, second.status) == ("POST", "/up", 201)


def test_plain_http_denied(proxy_for: ProxyFactory) -> None:
    proxy = proxy_for()
    status, body = ask(proxy, "GET http://example.com/x HTTP/1.1\r\n\r\n")
    assert status == 403 and body.startswith(b"ptb egress: example.com is not allowed")
    (event,) = events(proxy, 1)
    assert (event.method, event.path, event.port, event.decision) == ("GET", "/x", 80, "denied")


@pytest.mark.parametrize(
    "head",
    [
        "garbage\r\n\r\n",
        "GET /relative HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET https://github.com/ HTTP/1.1\r\n\r\n",
        "CONNECT github.com HTTP/1.1\r\n\r\n",
        "CONNECT github.com:99999 HTTP/1.1\r\n\r\n",
        "CONNECT bad_host!:443 HTTP/1.1\r\n\r\n",
        "GET http://github.com/ HTTP/2\r\n\r\n",
        "GET http://github.com/ HTTP/1.1\r\nno colon\r\n\r\n",
        "GET http://user:pw@github.com/ HTTP/1.1\r\n\r\n",
        "GET http://github.com/ HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "GET http://github.com/ HTTP/1.1",  # the client closes before the head ends
    ],
)
def test_malformed_request_gets_400(proxy_for: ProxyFactory, head: str) -> None:
    proxy = proxy_for()
    with dial(proxy) as sock:
        sock.sendall(head.encode())
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock).startswith(b"HTTP/1.1 400 ")
    (event,) = events(proxy, 1)
    assert event.decision == "denied" and event.status == 400 and event.reason


def test_chunked_request_body_gets_411(proxy_for: ProxyFactory) -> None:
    head = "POST http://github.com/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert ask(proxy_for(), head)[0] == 411


def test_summary_and_log_lines(proxy_for: ProxyFactory, echo_port: int) -> None:
    proxy = proxy_for(allow=[f"127.0.0.1:{echo_port}"])
    with dial(proxy) as sock:
        sock.sendall(f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\nping".encode())
        sock.shutdown(socket.SHUT_WR)
        assert read_all(sock).endswith(b"\r\n\r\nping")
    connect(proxy, "example.com:443")
    connect(proxy, "example.net:443")
    connect(proxy, "example.com:443")
    events(proxy, 4)
    summary = proxy.summary()
    assert (summary.requests, summary.allowed, summary.denied, summary.failed) == (4, 1, 3, 0)
    assert (summary.bytes_up, summary.bytes_down) == (4, 4)
    assert summary.distinct_hosts == 3
    assert summary.hosts == ["127.0.0.1", "example.com", "example.net"]
    assert summary.denied_hosts == ["example.com", "example.net"]
    lines = proxy.log_path.read_text().splitlines()
    assert [EgressEvent.model_validate_json(line) for line in lines] == read_events(proxy.log_path)


def test_upstream_failures_are_logged_as_errors(proxy_for: ProxyFactory) -> None:
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens there now

    def resolver(host: str, port: int) -> list[str]:
        raise socket.gaierror(-2, "Name or service not known")

    proxy = proxy_for(allow=[f"127.0.0.1:{port}"])
    assert connect(proxy, f"127.0.0.1:{port}")[0] == 502
    nxdomain = proxy_for("open", resolver=resolver)
    assert connect(nxdomain, "no-such-host.test:443")[0] == 502
    for p in (proxy, nxdomain):
        (event,) = events(p, 1)
        assert event.decision == "allowed" and event.status == 502 and event.error
        assert p.summary().failed == 1


def test_idle_tunnel_is_closed(proxy_for: ProxyFactory, echo_port: int) -> None:
    proxy = proxy_for(allow=[f"127.0.0.1:{echo_port}"], idle_timeout_s=0.2)
    with dial(proxy) as sock:
        sock.sendall(f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\n".encode())
        assert read_all(sock) == b"HTTP/1.1 200 Connection established\r\n\r\n"
    assert events(proxy, 1)[0].error == "idle timeout"


def test_stop_ends_open_tunnels_and_logs_them(proxy_for: ProxyFactory, echo_port: int) -> None:
    proxy = proxy_for(allow=[f"127.0.0.1:{echo_port}"])
    with dial(proxy) as sock:
        sock.sendall(f"CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\nabc".encode())
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
        proxy.stop()
        assert read_all(sock) in (b"abc", b"")
    (event,) = read_events(proxy.log_path)
    assert event.error == "proxy stopped" and event.bytes_up == 3
    assert not proxy.socket_path.exists()


def test_connection_limit(proxy_for: ProxyFactory) -> None:
    proxy = proxy_for(max_connections=1)
    with dial(proxy) as idle:
        with dial(proxy) as second:
            assert read_all(second).startswith(b"HTTP/1.1 503 ")
        idle.sendall(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n")
        assert read_all(idle).startswith(b"HTTP/1.1 403 ")
    assert proxy.summary().overloaded == 1
    assert connect(proxy, "example.com:443")[0] == 403  # the slot was given back


def test_socket_path_too_long(tmp_path: Path) -> None:
    proxy = EgressProxy(EgressPolicy(), tmp_path / ("s" * 120), tmp_path / "egress.jsonl")
    with pytest.raises(ConfigError):
        proxy.start()


def test_slow_request_head_is_dropped(proxy_for: ProxyFactory) -> None:
    proxy = proxy_for(head_timeout_s=1.0)
    with dial(proxy) as sock:
        sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\n")
        time.sleep(0.2)  # within the timeout: the head is still being read
        sock.sendall(b"X-Slow: 1\r\n")
        assert read_all(sock) == b""
    assert read_events(proxy.log_path) == []
