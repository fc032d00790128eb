"""`ptb view`: a local, read-only web app over a results dir.

Pages are rendered per request from the records on disk, so a run in progress shows its current
state on reload. Only GET and HEAD are answered; a run page is found by its key in a fresh scan,
never by joining a requested path onto the file system. Binds to loopback only, and answers only
requests whose Host header names the bound loopback address or localhost with its port: a page
elsewhere whose name an attacker re-points at 127.0.0.1 (DNS rebinding) gets 421 and nothing else.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from posttrainbench.errors import ConfigError, PtbError, ResultsDirError
from posttrainbench.report import build_leaderboard, plots
from posttrainbench.report.run_page import render_run_page
from posttrainbench.report.site import render_index, scan_entries

log = logging.getLogger(__name__)

_RUN = re.compile(r"/runs/([A-Za-z0-9._-]+)\.html")
_PLOT = re.compile(r"/plots/([a-z0-9-]+)\.(svg|png)")
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; img-src 'self' data:",
}


def check_loopback(host: str) -> str:
    """The host to bind to, if it is a loopback address (or 'localhost')."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ConfigError(
        f"ptb view binds to loopback only, not {host!r}",
        "use --host 127.0.0.1 and reach it through an SSH tunnel (ssh -L PORT:127.0.0.1:PORT)",
    )


def _plot(results: Path, name: str, fmt: str) -> bytes | None:
    board = build_leaderboard(results)
    figures = plots.board_figures(board, plots.board_records(results))
    fig = figures.get(name)
    return None if fig is None else plots.figure_bytes(fig, fmt)


def allowed_hosts(bind: str, port: int) -> frozenset[str]:
    """The Host header values the viewer answers (lower case): its own address and localhost,
    with the port (also without it on port 80, where clients leave it out)."""
    names = {f"[{bind}]" if ":" in bind else bind, "localhost"}
    return frozenset({f"{n}:{port}" for n in names} | (names if port == 80 else set()))


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    results: Path  # set on the subclass that serve() makes
    server_version = "ptb-view"
    hosts: frozenset[str] = frozenset()  # set once the server is bound

    def _host_ok(self) -> bool:
        """Only the Host names of this loopback server: anything else is refused, with no body."""
        if (self.headers.get("Host") or "").strip().lower() in self.hosts:
            return True
        self.send_response(HTTPStatus.MISDIRECTED_REQUEST)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        return False

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes, content_type: str, head: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in _SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _html(self, text: str, head: bool, status: int = HTTPStatus.OK) -> None:
        self._send(status, text.encode("utf-8"), "text/html; charset=utf-8", head)

    def _not_found(self, head: bool) -> None:
        self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8", head)

    def _route(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if path in ("/", "/index.html"):
            self._html(render_index(self.results), head)
            return
        if m := _RUN.fullmatch(path):
            entry = scan_entries(self.results).get(m.group(1))
            if entry is None:
                self._not_found(head)
                return
            self._html(render_run_page(entry.run_dir, index_href="../index.html"), head)
            return
        if m := _PLOT.fullmatch(path):
            body = _plot(self.results, m.group(1), m.group(2))
            if body is None:
                self._not_found(head)
                return
            kind = "image/svg+xml" if m.group(2) == "svg" else "image/png"
            self._send(HTTPStatus.OK, body, kind, head)
            return
        self._not_found(head)

    def _serve(self, head: bool) -> None:
        if not self._host_ok():
            return
        try:
            self._route(head)
        except ResultsDirError as exc:
            self._send(HTTPStatus.NOT_FOUND, f"{exc}\n".encode(), "text/plain; charset=utf-8", head)
        except PtbError as exc:  # e.g. runs of several suites: the one line says so
            self._send(HTTPStatus.CONFLICT, f"{exc}\n".encode(), "text/plain; charset=utf-8", head)
        except Exception:
            log.exception("ptb view: %s failed", self.path)
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"internal error\n", "text/plain", head)

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _refuse(self) -> None:
        if not self._host_ok():
            return
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse


def serve(results: Path, host: str = "127.0.0.1", port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """Bind the viewer (not yet serving: call `server.serve_forever()`); returns it and its URL."""
    if not results.is_dir():
        raise ResultsDirError(f"{results} is not a directory", "pass the results dir of a sweep")
    bind = check_loopback(host)

    class Handler(_Handler):
        pass

    Handler.results = results.resolve()
    try:
        server = (_Server6 if ":" in bind else _Server)((bind, port), Handler)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve on {bind}:{port}: {exc.strerror or exc}",
            "pick another port with -p PORT (-p 0 picks a free one)",
        ) from None
    Handler.hosts = allowed_hosts(bind, server.server_port)
    shown = f"[{bind}]" if ":" in bind else bind
    return server, f"http://{shown}:{server.server_port}/"


def serve_in_thread(results: Path, port: int = 0) -> tuple[ThreadingHTTPServer, str]:
    """The viewer serving from a daemon thread (tests, notebooks); `server.shutdown()` stops it."""
    server, url = serve(results, port=port)
    threading.Thread(target=server.serve_forever, daemon=True, name="ptb-view").start()
    return server, url
