"""The relay's own record of what the model saw and said: the request and response body of every
LLM call it forwarded, one `CallBodies` JSON line each in `agent/relay_bodies.jsonl`.

The file lives in the run directory, which no sandbox binds: the agent can neither read nor write
it, unlike its CLI's stdout. Bodies are kept as text (a streamed answer as the whole event stream),
redacted as the agent's logs are (the real key, the launch's dummy token, anything key-shaped).
Each body is capped (`MAX_BODY_BYTES`) and so is the file (`MAX_TOTAL_BYTES`, counted across
launches); a body over a cap is left out and the line says so in `omitted`, never silently. A
request repeats the conversation so far, so a request left out loses little: the next one carries
its history again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from posttrainbench.agents.trajectory.redact import Redactor

MAX_BODY_BYTES = 16 << 20
MAX_TOTAL_BYTES = 2 << 30


class CallBodies(BaseModel):
    """One forwarded LLM call's bodies, as the relay carried them."""

    seq: int = Field(description="Order of the call in the file (0-based, across launches).")
    started_at: datetime
    provider: str
    method: str
    path: str
    status: int
    stream: bool = False
    request: str | None = Field(default=None, description="The body sent upstream.")
    response: str | None = Field(default=None, description="The answer; SSE: the whole stream.")
    request_bytes: int = 0
    response_bytes: int = 0
    omitted: list[str] = Field(
        default_factory=list, description="Bodies left out, and why (a cap)."
    )


class BodyCapture:
    """A response body copied as it passes, up to `limit` bytes; `over` once more came."""

    def __init__(self, limit: int = MAX_BODY_BYTES) -> None:
        self.data = bytearray()
        self.limit = limit
        self.over = False

    def feed(self, chunk: bytes) -> None:
        if self.over:
            return
        if len(self.data) + len(chunk) > self.limit:
            self.over = True
            self.data.clear()
            return
        self.data += chunk


class BodyLog:
    """Appends `CallBodies` lines; safe across the relay's handler threads."""

    def __init__(
        self,
        path: Path,
        secrets: tuple[str, ...],
        *,
        max_body: int = MAX_BODY_BYTES,
        max_total: int = MAX_TOTAL_BYTES,
    ) -> None:
        self.path = path
        self._redact = Redactor(secrets)
        self.max_body, self.max_total = max_body, max_total
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._seq = _lines(path)
        self._total = path.stat().st_size if path.exists() else 0

    def _text(self, data: bytes | None, name: str, omitted: list[str]) -> str | None:
        if data is None:
            return None
        if len(data) > self.max_body:
            omitted.append(f"{name}: {len(data)} bytes, over the {self.max_body}-byte cap")
            return None
        return self._redact(data.decode("utf-8", errors="replace"))

    def add(
        self,
        *,
        started_at: datetime,
        provider: str,
        method: str,
        path: str,
        status: int,
        stream: bool,
        request: bytes | None,
        response: BodyCapture | None,
    ) -> None:
        omitted: list[str] = []
        if response is not None and response.over:
            omitted.append(f"response: over the {response.limit}-byte cap")
        answer = bytes(response.data) if response is not None and not response.over else None
        with self._lock:
            record = CallBodies(
                seq=self._seq,
                started_at=started_at,
                provider=provider,
                method=method,
                path=path,
                status=status,
                stream=stream,
                request=self._text(request, "request", omitted),
                response=self._text(answer, "response", omitted),
                request_bytes=len(request or b""),
                response_bytes=len(answer or b""),
                omitted=omitted,
            )
            line = record.model_dump_json() + "\n"
            if self._total + len(line) > self.max_total:
                record.request = record.response = None
                record.omitted.append(f"bodies: the file's {self.max_total}-byte cap is reached")
                line = record.model_dump_json() + "\n"
            self._seq += 1
            self._total += len(line)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def iter_bodies(path: Path) -> Iterator[CallBodies]:
    """Every readable line of a bodies file, one at a time (none if it is missing); a line cut by
    a crash is skipped."""
    try:
        f = path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            try:
                yield CallBodies.model_validate_json(line)
            except ValidationError:
                continue


def read_bodies(path: Path) -> list[CallBodies]:
    return list(iter_bodies(path))
