"""The relay's records: one `LlmCall` per request (a JSON line of `llm_calls.jsonl`) and the
run's running totals (`ApiUsage`). Costs are Decimal, written to JSON as strings to stay exact."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field

from posttrainbench.records import ApiUsage, Usage, Usd

Refusal = Literal[
    "auth",  # no or wrong dummy token
    "endpoint",  # another provider's endpoint, or one the relay does not forward
    "budget",  # the run's API budget is spent
    "unpriced",  # a budget is set and the model has no price
    "bad_request",  # a malformed request, or a body over the relay's size limit
    "provider_tool",  # a model that searches the web by itself, not allowed in this run
]


# "0.007275", never "0.00727500" nor "7.275E-3"


@dataclass(frozen=True)
class Reservation:
    fits: bool
    spent: Decimal  # before this call
    held: Decimal  # by other calls in flight


class LlmCall(Usage):
    """One request to the relay, forwarded or refused."""

    started_at: datetime
    duration_s: float
    first_byte_s: float | None = Field(
        default=None, description="Until the first body byte upstream."
    )
    provider: str
    method: str
    path: str = Field(description="Path and query as the client sent them, API keys removed.")
    model: str | None = None
    stream: bool = False
    status: int = Field(description="The status the relay answered.")
    cost_usd: Usd = Decimal(0)
    priced: bool = Field(default=True, description="False: the model has no price; cost_usd is 0.")
    metered: bool = Field(default=True, description="False: usage was expected but not found.")
    max_cost_usd: Usd | None = Field(
        default=None, description="The most the call could cost, reserved against the budget."
    )
    priced_at_max: bool = Field(
        default=False, description="Cut before its final usage: charged max_cost_usd."
    )
    provider_tools: list[str] = Field(
        default_factory=list,
        description="Provider-side tools the request asked for (web search, fetch, MCP...).",
    )
    provider_tools_stripped: bool = Field(
        default=False, description="They were removed before forwarding (the run's default)."
    )
    request_bytes: int = 0
    response_bytes: int = 0
    refused: Refusal | None = None
    error: str | None = None


class CallLog:
    """Appends calls to the JSONL file and keeps the totals; safe across handler threads."""

    def __init__(self, path: Path, totals: ApiUsage) -> None:
        self.path = path
        self._totals = totals
        self._held = Decimal(0)  # reserved by calls in flight
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)

    def reserve(self, amount: Decimal, budget: Decimal) -> Reservation:
        """Hold `amount` for a call about to start if the spent and held sums leave room."""
        with self._lock:
            spent, held = self._totals.cost_usd, self._held
            fits = spent < budget and spent + held + amount <= budget
            if fits:
                self._held += amount
            return Reservation(fits=fits, spent=spent, held=held)

    def add(self, call: LlmCall, release: Decimal = Decimal(0)) -> None:
        """Log a finished call, and free what it held in the same step as charging its cost."""
        line = call.model_dump_json() + "\n"
        with self._lock:
            self._held -= release
            t = self._totals
            if call.refused:
                t.refused_calls += 1
            else:
                t.calls += 1
                t.failed_calls += not 200 <= call.status < 300
            t.unpriced_calls += not call.priced and not call.refused
            t.priced_at_max_calls += call.priced_at_max
            t.provider_tool_calls += bool(call.provider_tools)
            t.input_tokens += call.input_tokens
            t.output_tokens += call.output_tokens
            t.cached_tokens += call.cached_tokens
            t.cache_write_tokens += call.cache_write_tokens
            t.cache_write_1h_tokens += call.cache_write_1h_tokens
            t.cost_usd += call.cost_usd
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line)

    def spent(self) -> Decimal:
        with self._lock:
            return self._totals.cost_usd

    def held(self) -> Decimal:
        with self._lock:
            return self._held

    def totals(self) -> ApiUsage:
        with self._lock:
            return self._totals.model_copy()
