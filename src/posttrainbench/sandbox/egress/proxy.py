"""The harness-side forward proxy that is the agent's only way out of its network namespace.

It listens on a unix socket (bind-mounted into the sandbox, bridged there to 127.0.0.1:3128) and
serves `CONNECT host:port` tunnels and plain `http://` requests, one request per connection. Each
request is checked by name against the `EgressPolicy`, the name is resolved once, every address
is checked (no loopback, private or link-local address unless the run listed it), and the proxy
connects to an address it checked, so a second DNS answer cannot redirect it (rebinding). Each
request becomes a line of egress.jsonl. Threads are bounded: at most `max_connections` at once,
and a connection idle for `idle_timeout_s` is closed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import select
import selectors
import socket
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from posttrainbench.errors import ConfigError, InfrastructureError
from posttrainbench.records import now
from posttrainbench.sandbox.egress.http import (
    MAX_HEAD,
    Refused,
    Request,
    forwarded_head,
    parse_head,
    response,
    status_of,
)
from posttrainbench.sandbox.egress.log import EgressEvent, EgressLog, EgressSummary
from posttrainbench.sandbox.egress.policy import EgressPolicy, IPAddress, Resolver, resolve_host

log = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_ADDRESSES_TRIED = 4
UNIX_PATH_MAX = 107


@dataclass
class _Flow:
    bytes_up: int = 0
    bytes_down: int = 0
    first_down: bytes = b""
    error: str | None = None


class EgressProxy:
    """`with EgressProxy(policy, sock, log) as proxy:` serves until the block ends."""

    def __init__(
        self,
        policy: EgressPolicy,
        socket_path: Path,
        log_path: Path,
        *,
        max_connections: int = 256,
        idle_timeout_s: float = 300.0,
        head_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        resolver: Resolver = resolve_host,
    ) -> None:
        self.policy, self.socket_path, self.log_path = policy, Path(socket_path), Path(log_path)
        self.idle_timeout_s, self.head_timeout_s = idle_timeout_s, head_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._resolver = resolver
        self._log = EgressLog(self.log_path)
        self._slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._listener: socket.socket | None = None
        self._server: threading.Thread | None = None
        self._stopping = False

    def __enter__(self) -> EgressProxy:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> EgressProxy:
        if self._server is not None:
            raise RuntimeError("egress proxy already started")
        path = self.socket_path
        if len(os.fsencode(path)) > UNIX_PATH_MAX:
            raise ConfigError(
                f"egress socket path {path} is longer than {UNIX_PATH_MAX} bytes",
                hint="use a results directory with a shorter path",
            )
        if path.is_symlink() or path.exists():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise InfrastructureError(
                    f"{path} exists and is not a socket", hint="remove it or choose another path"
                )
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(path))
            os.chmod(path, 0o600)
            listener.listen(128)
        except OSError as e:
            listener.close()
            raise InfrastructureError(f"cannot listen on {path}: {e}") from e
        self._listener = listener
        self._wake_r, self._wake_w = socket.socketpair()
        self._server = threading.Thread(
            target=self._serve, args=(listener,), name="egress-proxy", daemon=True
        )
        self._server.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, end every open connection (each is logged) and wait for its thread."""
        if self._server is None or self._listener is None or self._stopping:
            return
        self._stopping = True
        self._wake_w.send(b"x")
        self._server.join(timeout_s)
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            threads = list(self._threads)
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in threads):
            log.warning("egress proxy: %d connection(s) did not end in time", len(threads))
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def summary(self) -> EgressSummary:
        """Counts over the requests this proxy served (not over older lines of the log)."""
        return self._log.summary()

    def _serve(self, listener: socket.socket) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        conn, _ = listener.accept()
                    except OSError:  # e.g. out of file descriptors: let some close
                        time.sleep(0.05)
                        continue
                    if not self._slots.acquire(blocking=False):
                        self._log.count_overload()
                        with contextlib.suppress(OSError):
                            conn.settimeout(1.0)
                            conn.sendall(response(503, "ptb egress: too many connections\n"))
                        conn.close()
                        continue
                    thread = threading.Thread(
                        target=self._handle, args=(conn,), name="egress-conn", daemon=True
                    )
                    with self._lock:
                        self._threads.add(thread)
                        self._open.add(conn)
                    thread.start()

    def _handle(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            started, start_time = time.monotonic(), now()
            event = EgressEvent(time=start_time, host="", method="", decision="denied")
            try:
                got = self._read_head(conn)
                if got is None:
                    return
                head, rest = got
                method = head.split(b" ", 1)[0].decode("latin-1")[:32]
                event.method = method if method.isascii() and method.isalpha() else ""
                req = parse_head(head)
                event.host, event.port, event.method, event.path = (
                    req.host, req.port, req.method, req.path
                )  # fmt: skip
                addresses = self._check(req)
                upstream, event.address = self._connect(req, addresses)
                event.decision = "allowed"
            except Refused as refused:
                event.host = event.host or refused.host
                event.status = refused.status
                event.duration_s = time.monotonic() - started
                if refused.status in (502, 504):
                    event.decision, event.error = "allowed", refused.reason
                else:
                    event.reason = refused.reason
                self._log.write(event)
                with contextlib.suppress(OSError):
                    conn.sendall(response(refused.status, self._refusal(event, refused)))
                return
            except OSError:
                return  # the client went away, or said nothing in time: no request to log
            flow = self._relay(conn, upstream, req, rest)
            event.bytes_up, event.bytes_down = flow.bytes_up, flow.bytes_down
            event.status = 200 if req.method == "CONNECT" else status_of(flow.first_down)
            event.error = flow.error
            event.duration_s = time.monotonic() - started
            self._log.write(event)
        except Exception:
            log.exception("egress proxy: connection handler failed")
        finally:
            with self._lock:
                self._open.discard(conn)
                if upstream is not None:
                    self._open.discard(upstream)
                self._threads.discard(threading.current_thread())
            self._slots.release()
            for sock in (conn, upstream):
                if sock is not None:
                    sock.close()

    def _refusal(self, event: EgressEvent, refused: Refused) -> str:
        if refused.status == 403:
            return (
                f"ptb egress: {event.host} is not allowed by the run's network policy"
                f" ({self.policy.mode}); ask for it with --allow-host\n{refused.reason}\n"
            )
        return f"ptb egress: {refused.reason}\n"

    def _read_head(self, conn: socket.socket) -> tuple[bytes, bytes] | None:
        """(request head, bytes read past it), or None if the client sent nothing at all. The
        whole head must arrive within `head_timeout_s`."""
        buf = bytearray()
        deadline = time.monotonic() + self.head_timeout_s
        while True:
            ends = [
                (i, n) for i, n in ((buf.find(b"\r\n\r\n"), 4), (buf.find(b"\n\n"), 2)) if i >= 0
            ]
            if ends:
                i, n = min(ends)
                return bytes(buf[:i]), bytes(buf[i + n :])
            if len(buf) > MAX_HEAD:
                raise Refused(431, f"request head longer than {MAX_HEAD} bytes")
            conn.settimeout(max(0.001, deadline - time.monotonic()))
            data = conn.recv(8192)
            if not data:
                if buf:
                    raise Refused(400, "incomplete request head")
                return None
            buf += data

    def _check(self, req: Request) -> list[IPAddress]:
        """The addresses the request may connect to; raises Refused(403) when it may not."""
        reason = self.policy.check_name(req.host, req.port)
        if reason is not None:
            raise Refused(403, reason)
        try:
            addresses = [ipaddress.ip_address(a) for a in self._resolver(req.host, req.port)]
        except (OSError, UnicodeError, ValueError) as e:
            raise Refused(502, f"cannot resolve {req.host}: {e}") from None
        if not addresses:
            raise Refused(502, f"{req.host} resolves to no address")
        reason = self.policy.check_addresses(req.host, req.port, addresses)
        if reason is not None:
            raise Refused(403, reason)
        return addresses

    def _connect(self, req: Request, addresses: list[IPAddress]) -> tuple[socket.socket, str]:
        error: OSError | None = None
        for address in addresses[:MAX_ADDRESSES_TRIED]:
            try:
                upstream = socket.create_connection(
                    (str(address), req.port), timeout=self.connect_timeout_s
                )
            except OSError as e:
                error = e
                continue
            with self._lock:
                if self._stopping:  # stop() may have passed over the open sockets already
                    upstream.close()
                    raise Refused(502, "the egress proxy is stopping")
                self._open.add(upstream)
            return upstream, str(address)
        timed_out = isinstance(error, TimeoutError)
        raise Refused(504 if timed_out else 502, f"cannot connect to {req.host}: {error}")

    def _relay(
        self, conn: socket.socket, upstream: socket.socket, req: Request, rest: bytes
    ) -> _Flow:
        flow = _Flow()
        try:
            conn.settimeout(self.idle_timeout_s)
            upstream.settimeout(self.idle_timeout_s)
            up_limit = req.body_length
            if req.method != "CONNECT":
                head = forwarded_head(req)
                upstream.sendall(head)
                flow.bytes_up += len(head)
            if up_limit is not None:
                rest = rest[:up_limit]
                up_limit -= len(rest)
            # Bytes the client sent with its head go first: once it has the 200, they are upstream.
            upstream.sendall(rest)
            flow.bytes_up += len(rest)
            if req.method == "CONNECT":
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self._pipe(conn, upstream, up_limit, flow)
        except TimeoutError:
            flow.error = "idle timeout"
        except OSError:
            pass  # a reset or broken pipe ends the connection; the bytes so far are counted
        if self._stopping and flow.error is None:
            flow.error = "proxy stopped"
        if req.method != "CONNECT" and flow.bytes_down == 0:
            with contextlib.suppress(OSError):
                conn.sendall(response(502, f"ptb egress: no response from {req.host}\n"))
        return flow

    def _pipe(
        self,
        conn: socket.socket,
        upstream: socket.socket,
        up_limit: int | None,
        flow: _Flow,
    ) -> None:
        """Copy both ways until both sides are done; an end of file is passed on as a half-close.
        With `up_limit`, only that many bytes go upstream (the request body), then no more."""
        poller = select.poll()
        peers = {conn.fileno(): (conn, upstream), upstream.fileno(): (upstream, conn)}
        reading = {upstream.fileno()} | ({conn.fileno()} if up_limit != 0 else set())
        for fd in reading:
            poller.register(fd, select.POLLIN)
        buf = memoryview(bytearray(CHUNK))
        while reading:
            ready = poller.poll(self.idle_timeout_s * 1000)
            if not ready:
                raise TimeoutError
            for fd, _ in ready:
                src, dst = peers[fd]
                up = src is conn
                size = min(CHUNK, up_limit) if up and up_limit is not None else CHUNK
                n = src.recv_into(buf[:size])
                if n == 0:
                    poller.unregister(fd)
                    reading.discard(fd)
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    continue
                dst.sendall(buf[:n])
                if not up:
                    flow.bytes_down += n
                    if len(flow.first_down) < 512:
                        flow.first_down += bytes(buf[: min(n, 512 - len(flow.first_down))])
                    continue
                flow.bytes_up += n
                if up_limit is not None:
                    up_limit -= n
                    if up_limit == 0:
                        poller.unregister(fd)
                        reading.discard(fd)
