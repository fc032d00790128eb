"""The price table: USD per million tokens by model, from the packaged `prices.toml` merged with
an optional override file; exact costs in Decimal."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from fnmatch import fnmatchcase
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from posttrainbench.errors import ConfigError
from posttrainbench.records import Record
from posttrainbench.sandbox.relay.wire import Usage

PRICES_VAR = "PTB_PRICES"
_PER_TOKEN = -6  # prices are per million tokens: cost = tokens × price × 10⁻⁶


class Rates(Record):
    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)
    cache_write: Decimal | None = Field(default=None, ge=0)
    cache_write_1h: Decimal | None = Field(default=None, ge=0)

    def cost(self, usage: Usage) -> Decimal:
        cached = self.input if self.cached_input is None else self.cached_input
        write = self.input if self.cache_write is None else self.cache_write
        write_1h = write if self.cache_write_1h is None else self.cache_write_1h
        plain = max(0, usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens)
        total = (
            plain * self.input
            + usage.cached_tokens * cached
            + (usage.cache_write_tokens - usage.cache_write_1h_tokens) * write
            + usage.cache_write_1h_tokens * write_1h
            + usage.output_tokens * self.output
        )
        return Decimal(total).scaleb(_PER_TOKEN)


class LongContextRates(Rates):
    above: int = Field(gt=0, description="Prompt tokens beyond which these rates apply.")


class Price(Rates):
    long_context: LongContextRates | None = None
    max_output: int | None = Field(
        default=None, gt=0, description="The model's most output tokens, for requests with none."
    )

    def cost(self, usage: Usage) -> Decimal:
        tier = self.long_context
        if tier is not None and usage.input_tokens > tier.above:
            return tier.cost(usage)
        return super().cost(usage)

    def most(self, request_bytes: int, output_tokens: int) -> Decimal:
        """A bound on a call's cost: every request byte a prompt token (no tokenizer gives more
        tokens than bytes of text), and all the output tokens it may generate."""
        return self.cost(Usage(input_tokens=request_bytes, output_tokens=output_tokens))


class PriceTable(Record):
    as_of: str | None = None
    models: dict[str, Price] = Field(default_factory=dict)

    def lookup(self, model: str | None) -> Price | None:
        if not model:
            return None
        name = model.strip().lower().rsplit("/", 1)[-1]
        best: tuple[int, str] | None = None
        for key in self.models:
            pattern = key.lower()
            if any(c in pattern for c in "*?["):
                hit = fnmatchcase(name, pattern)
            else:
                hit = name == pattern or name.startswith(pattern + "-")
            weight = len(pattern.replace("*", "").replace("?", ""))
            if hit and (best is None or weight > best[0]):
                best = (weight, key)
        return self.models[best[1]] if best else None


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f, parse_float=Decimal)
    except OSError as e:
        raise ConfigError(
            f"cannot read price file {path}: {e.strerror}", f"check {PRICES_VAR} or `prices=`"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(
            f"price file {path} is not valid TOML: {e}", "see the packaged prices.toml for layout"
        ) from None


def load_prices(override: Path | None = None) -> PriceTable:
    """The packaged table, with `override`'s models merged over it field by field."""
    default = files("posttrainbench.sandbox.relay").joinpath("prices.toml")
    with default.open("rb") as f:
        data = tomllib.load(f, parse_float=Decimal)
    if override is not None:
        extra = _read(override)
        models = dict(data.get("models", {}))
        for key, fields in extra.get("models", {}).items():
            base = models.get(key)
            if isinstance(base, dict) and isinstance(fields, dict):
                fields = {**base, **fields}
            models[key] = fields
        data = {**data, **{k: v for k, v in extra.items() if k != "models"}, "models": models}
    try:
        return PriceTable.model_validate(data)
    except ValidationError as e:
        where = override or "the packaged prices.toml"
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"bad price table {where}: {loc}: {first['msg']}",
            "each model needs input and output (USD per million tokens)",
        ) from None
