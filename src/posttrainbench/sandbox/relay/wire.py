"""What every provider's wire format shares: routes, token usage, an incremental SSE parser, and
the base class that each provider's module subclasses."""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, ClassVar
from urllib.parse import unquote_plus, urlsplit

from posttrainbench.records import Usage


@dataclass(frozen=True)
class Route:
    """One endpoint the relay forwards; `metered` ones are priced and count against the budget."""

    method: str
    pattern: str
    metered: bool = True

    def match(self, method: str, path: str) -> re.Match[str] | None:
        if method != self.method:
            return None
        return re.fullmatch(self.pattern, path)


class Meter(ABC):
    """Reads a response's usage on the side: every SSE event, or the whole JSON body. `seen`: some
    usage came; `final`: the usage of the whole answer came (a cut stream has none)."""

    def __init__(self) -> None:
        self.usage = Usage()
        self.seen = False
        self.final = False

    @abstractmethod
    def event(self, name: str, data: Any) -> None:
        """One SSE event: its `event:` name and its `data:` parsed as JSON."""

    @abstractmethod
    def body(self, data: Any) -> None:
        """A non-streamed response parsed as JSON."""


def count(obj: Any, *keys: str) -> int | None:
    """The integer at obj[k1][k2]..., or None where any level is missing or not a number."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj if isinstance(obj, int) and not isinstance(obj, bool) else None


def limit(obj: Any, *names: str) -> int | None:
    """The first of `obj[name]` that is a positive integer (a request's token limit, its count of
    answers), or None."""
    for name in names:
        if (n := count(obj, name)) is not None and n > 0:
            return n
    return None


ToolSplit = Callable[[Any], tuple[Any, list[str]]]


def strip_tools(
    body: dict[str, Any], split: ToolSplit, fields: tuple[str, ...], choice: tuple[str, ...]
) -> tuple[dict[str, Any], list[str]]:
    """`body` without provider-side tools, and their names. `split(tool)` gives the tool's client
    part (None: nothing) and what it held besides; `fields` are request fields that are tools in
    themselves; `choice` the tool-choice fields, dropped with the last tool."""
    found = [name for name in fields if name in body]
    out = {k: v for k, v in body.items() if k not in fields}
    tools = body.get("tools")
    if isinstance(tools, list):
        kept = []
        for tool in tools:
            client, names = split(tool)
            found += names
            if client is not None:
                kept.append(client)
        if kept != tools:
            out["tools"] = kept
        if not kept and tools:
            for name in ("tools", *choice):
                out.pop(name, None)
    return out, found


class WireFormat(ABC):
    """One provider: its endpoints, authentication, error shape and usage fields."""

    name: ClassVar[str]
    key_vars: ClassVar[tuple[str, ...]]  # harness variables holding the real key, first wins
    base_var: ClassVar[str]  # harness variable overriding the upstream base URL
    default_base: ClassVar[str]
    routes: ClassVar[tuple[Route, ...]]
    default_max_output: ClassVar[int]  # the most output tokens of any of the provider's models
    search_models: ClassVar[tuple[str, ...]] = ()  # globs of models that search the web unasked

    def route(self, method: str, path: str) -> tuple[Route, re.Match[str]] | None:
        for route in self.routes:
            if m := route.match(method, path):
                return route, m
        return None

    @abstractmethod
    def client_tokens(self, headers: Mapping[str, str], query: str) -> list[str]:
        """Every API key the client sent (headers are lower-cased)."""

    @abstractmethod
    def upstream_auth(self, key: str) -> dict[str, str]:
        """The headers that carry the real key upstream."""

    @abstractmethod
    def error_body(self, status: int, message: str) -> bytes:
        """A JSON error in this provider's shape."""

    @abstractmethod
    def meter(self) -> Meter: ...

    @abstractmethod
    def client_env(self, base_url: str, token: str) -> dict[str, str]:
        """The variables that point this provider's CLIs at `base_url` (no trailing /v1)."""

    def forward_query(self, query: str) -> str:
        return query

    def model(self, match: re.Match[str], body: Any) -> str | None:
        model = body.get("model") if isinstance(body, dict) else None
        return model if isinstance(model, str) else None

    def is_stream(self, match: re.Match[str], body: Any, query: str) -> bool:
        return isinstance(body, dict) and body.get("stream") is True

    def prepare(self, match: re.Match[str], body: Any) -> Any | None:
        """The request body to send upstream instead of the client's, or None to keep it."""
        return None

    def max_output(self, match: re.Match[str], body: dict[str, Any], default: int) -> int:
        """The most output tokens the request may get: its own limit, else `default`, times the
        answers it asks for."""
        return default

    def provider_tools(
        self, match: re.Match[str], body: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str]]:
        """The request without the tools the provider runs itself (web search and fetch, code
        execution, MCP...), and their names; the agent's own function tools stay."""
        return body, []

    def searches(self, model: str | None) -> bool:
        """The model searches the web by itself, without a tool in the request."""
        name = (model or "").strip().lower().rsplit("/", 1)[-1]
        return any(fnmatchcase(name, pattern) for pattern in self.search_models)


def bearer(headers: Mapping[str, str]) -> list[str]:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return [token.strip()] if scheme.lower() == "bearer" else []


def drop_query_param(query: str, name: str) -> str:
    """`query` without `name=...`; the other parameters keep their exact bytes."""
    parts = [p for p in query.split("&") if p and unquote_plus(p.partition("=")[0]) != name]
    return "&".join(parts)


def query_values(query: str, name: str) -> list[str]:
    return [
        unquote_plus(value)
        for key, _, value in (p.partition("=") for p in query.split("&") if p)
        if unquote_plus(key) == name
    ]


def json_error(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def upstream_url(base: str, path: str) -> str:
    """`base` + `path`, without repeating a version segment both end and start with.

    `https://api.openai.com/v1` + `/v1/responses` → `https://api.openai.com/v1/responses`;
    `https://api.openai.com` + `/v1/responses` → the same."""
    base = base.rstrip("/")
    first = "/" + path.lstrip("/").split("/", 1)[0]
    if first != "/" and urlsplit(base).path.endswith(first):
        path = path[len(first) :]
    return base + path


class SseParser:
    """Incremental `text/event-stream` parser (WHATWG rules): feed it bytes as they arrive, in
    chunks cut anywhere; it calls `on_event(name, data)` for each complete event."""

    def __init__(self, on_event: Callable[[str, str], None]) -> None:
        self._on_event = on_event
        self._buf = b""
        self._event = ""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> None:
        buf = self._buf + chunk
        held = b""
        if buf.endswith(b"\r"):
            buf, held = buf[:-1], b"\r"  # may be the first half of \r\n
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = buf.split(b"\n")
        for line in lines:
            self._line(line)
        self._buf = rest + held

    def close(self) -> None:
        if self._buf:
            self._line(self._buf.rstrip(b"\r"))
            self._buf = b""
        self._line(b"")

    def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace")
        if not line:
            if self._data:
                self._on_event(self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return
        if line.startswith(":"):
            return
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._event = value
        elif field == "data":
            self._data.append(value)
