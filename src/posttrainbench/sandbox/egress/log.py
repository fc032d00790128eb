"""egress.jsonl: one `EgressEvent` per proxied request, and the `EgressSummary` stored in run.json.

A denied request is written at once; an allowed one when its connection ends, with the bytes it
moved. Appends are serialised by a lock and each line is written whole, so lines never interleave.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from posttrainbench.records import MAX_SUMMARY_HOSTS, STORED, EgressSummary, Versioned

EgressDecision = Literal["allowed", "denied"]


class EgressEvent(Versioned):
    """One request through the egress proxy."""

    time: datetime = Field(description="When the request arrived (UTC).")
    host: str = Field(description="Requested host as the policy saw it; '' if unparseable.")
    port: int | None = None
    method: str = Field(description="'CONNECT' for a tunnel, else the HTTP method; '' if unknown.")
    path: str | None = Field(default=None, description="Path and query of a plain HTTP request.")
    address: str | None = Field(default=None, description="The resolved address connected to.")
    decision: EgressDecision
    reason: str | None = Field(default=None, description="Why the request was denied.")
    error: str | None = Field(default=None, description="Why an allowed request failed upstream.")
    status: int | None = Field(
        default=None,
        description="HTTP status: the proxy's own answer, or the upstream's for plain HTTP.",
    )
    bytes_up: int = Field(
        default=0,
        description="Bytes sent upstream: tunnel payload, or the forwarded request with body.",
    )
    bytes_down: int = Field(
        default=0,
        description="Bytes sent back from upstream: tunnel payload, or the whole response.",
    )
    duration_s: float = 0.0


class _Tally:
    def __init__(self) -> None:
        self.summary = EgressSummary()
        self.hosts: set[str] = set()
        self.denied_hosts: set[str] = set()

    def add(self, event: EgressEvent) -> None:
        s = self.summary
        s.requests += 1
        if event.decision == "allowed":
            s.allowed += 1
            s.failed += event.error is not None
        else:
            s.denied += 1
            if event.host:
                self.denied_hosts.add(event.host)
        s.bytes_up += event.bytes_up
        s.bytes_down += event.bytes_down
        if event.host:
            self.hosts.add(event.host)

    def result(self) -> EgressSummary:
        return self.summary.model_copy(
            update={
                "distinct_hosts": len(self.hosts),
                "hosts": sorted(self.hosts)[:MAX_SUMMARY_HOSTS],
                "denied_hosts": sorted(self.denied_hosts)[:MAX_SUMMARY_HOSTS],
            }
        )


class EgressLog:
    """Thread-safe appends to egress.jsonl, tallied as they go."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._tally = _Tally()
        self.overloaded = 0

    def write(self, event: EgressEvent) -> None:
        line = event.model_dump_json() + "\n"
        with self._lock:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)
            self._tally.add(event)

    def count_overload(self) -> None:
        with self._lock:
            self.overloaded += 1

    def summary(self) -> EgressSummary:
        with self._lock:
            return self._tally.result().model_copy(update={"overloaded": self.overloaded})


def read_events(path: Path) -> list[EgressEvent]:
    """Every event of an egress log (a missing log has none). A torn last line (the harness died
    mid-write) is skipped; any other bad line raises ValidationError."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    events = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            events.append(EgressEvent.model_validate_json(line, context=STORED))
        except ValueError:
            if i < len(lines) - 1:
                raise
    return events


def summarize(events: list[EgressEvent]) -> EgressSummary:
    tally = _Tally()
    for event in events:
        tally.add(event)
    return tally.result()
