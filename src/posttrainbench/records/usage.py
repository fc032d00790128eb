"""LLM usage the same way for every provider: tokens, calls and exact dollars."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import Field, PlainSerializer

from posttrainbench.records.base import Record

# Dollars stay exact: Decimal, written to JSON as a plain string.
Usd = Annotated[Decimal, PlainSerializer(lambda d: format(d.normalize(), "f"), when_used="json")]


class Usage(Record):
    """Tokens of one call, the same way for every provider."""

    input_tokens: int = Field(
        default=0, description="Every prompt token, cached and cache-write included."
    )
    output_tokens: int = Field(default=0, description="Generated tokens, reasoning included.")
    cached_tokens: int = Field(default=0, description="Part of input_tokens read from a cache.")
    cache_write_tokens: int = Field(
        default=0, description="Part of input_tokens written to a cache."
    )
    cache_write_1h_tokens: int = Field(
        default=0, description="Part of cache_write_tokens kept for one hour (Anthropic)."
    )


class ApiUsage(Usage):
    """Totals of a run's relay so far."""

    provider: str
    calls: int = Field(default=0, description="Requests forwarded upstream.")
    failed_calls: int = Field(default=0, description="Forwarded calls that got no 2xx answer.")
    refused_calls: int = Field(default=0, description="Requests the relay answered itself.")
    unpriced_calls: int = Field(default=0, description="Metered calls to a model without a price.")
    priced_at_max_calls: int = Field(
        default=0, description="Calls cut before their final usage, charged their maximum cost."
    )
    provider_tool_calls: int = Field(
        default=0, description="Calls that asked for provider-side tools (web search, fetch...)."
    )
    cost_usd: Usd = Decimal(0)
    budget_usd: Usd | None = None
    prices_as_of: str | None = None


class CliUsage(Usage):
    """Totals the agent's CLI reported about its own LLM calls."""

    calls: int = 0
    cost_usd: Usd | None = None
