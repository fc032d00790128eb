"""The little of HTTP/1.1 the egress proxy speaks: parse a proxy request's head, rewrite a plain
request for the origin server, and write the proxy's own short answers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from http import HTTPStatus

from posttrainbench.sandbox.egress.policy import normalize_host

MAX_HEAD = 64 * 1024
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HOP_BY_HOP = frozenset(
    {"connection", "proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate",
     "te", "trailer", "transfer-encoding", "upgrade", "host"}
)  # fmt: skip


class Refused(Exception):
    """The proxy answers the request itself with `status`."""

    def __init__(self, status: int, reason: str, host: str = "") -> None:
        super().__init__(reason)
        self.status, self.reason, self.host = status, reason, host


@dataclass
class Request:
    method: str
    host: str  # normalised
    port: int
    authority: str  # as the client wrote it, for the Host header
    path: str | None  # plain HTTP only
    headers: list[tuple[str, str]]
    body_length: int | None  # None for CONNECT


def split_authority(text: str, default_port: int | None) -> tuple[str, str, int]:
    """'host:port' → (authority, host, port); IPv6 in brackets."""
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[: end + 1], text[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise Refused(400, f"malformed authority {text!r}")
        port = rest[1:] or None
    else:
        host, sep, port_text = text.rpartition(":")
        host, port = (host, port_text) if sep else (text, None)
    if port is None:
        if default_port is None:
            raise Refused(400, f"CONNECT target {text!r} has no port")
        port_num = default_port
    elif port.isdigit() and 1 <= int(port) <= 65535:
        port_num = int(port)
    else:
        raise Refused(400, f"malformed port in {text!r}")
    name = normalize_host(host)
    if name is None:
        raise Refused(400, f"malformed host {host!r}")
    return text, name, port_num


def parse_head(head: bytes) -> Request:
    """The request line and headers (without the blank line); raises Refused when malformed."""
    lines = re.split(r"\r?\n", head.decode("latin-1"))
    parts = lines[0].split(" ")
    if (
        len(parts) != 3
        or not _TOKEN.fullmatch(parts[0])
        or parts[2] not in ("HTTP/1.0", "HTTP/1.1")
    ):
        raise Refused(400, f"malformed request line {lines[0][:200]!r}")
    method, target, _ = parts
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise Refused(400, f"malformed header line {line[:200]!r}")
        headers.append((name, value.strip()))
    if method == "CONNECT":
        authority, host, port = split_authority(target, None)
        return Request(method, host, port, authority, None, headers, None)
    scheme, sep, rest = target.partition("://")
    if not sep or scheme.lower() != "http":
        raise Refused(400, f"{target[:200]!r} is no absolute http:// URI (use CONNECT for https)")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc, path = rest[:cut], rest[cut:].partition("#")[0]
    if "@" in netloc:
        raise Refused(400, "credentials in the URI are not supported")
    authority, host, port = split_authority(netloc, 80)
    path = path if path.startswith("/") else "/" + path
    fields = {n.lower(): v for n, v in headers}
    if "transfer-encoding" in fields:
        raise Refused(411, "chunked request bodies are not supported; send Content-Length", host)
    lengths = {v for n, v in headers if n.lower() == "content-length"}
    if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
        raise Refused(400, "malformed Content-Length", host)
    body = int(lengths.pop()) if lengths else 0
    return Request(method, host, port, authority, path, headers, body)


def forwarded_head(req: Request) -> bytes:
    connection = {
        token.strip().lower()
        for name, value in req.headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    kept = [(n, v) for n, v in req.headers if n.lower() not in _HOP_BY_HOP | connection]
    lines = [f"{req.method} {req.path} HTTP/1.1", f"Host: {req.authority}"]
    lines += [f"{n}: {v}" for n, v in kept] + ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def response(status: int, text: str) -> bytes:
    body = text.encode()
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


def status_of(first: bytes) -> int | None:
    parts = first.split(b"\r\n", 1)[0].split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
