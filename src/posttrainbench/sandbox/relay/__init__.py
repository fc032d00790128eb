"""The per-run API relay: the agent's only way to its LLM provider, with the real key kept out of
the sandbox, every call metered, priced and logged, and an optional dollar budget enforced.

    with Relay("anthropic", socket_path, run_dir / "agent" / "llm_calls.jsonl", token,
               budget_usd=20) as relay:
        env = agent_env("anthropic", "http://127.0.0.1:PORT", token)  # bridged to socket_path
        ...
        relay.usage()
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from posttrainbench.sandbox.relay.calls import ApiUsage, LlmCall
from posttrainbench.sandbox.relay.prices import PRICES_VAR, PriceTable, load_prices
from posttrainbench.sandbox.relay.providers import PROVIDERS, agent_env

if TYPE_CHECKING:
    from posttrainbench.sandbox.relay.server import Relay


def __getattr__(name: str) -> Any:
    """The server (and its HTTP stack) loads on first use: reading call logs needs neither."""
    if name == "Relay":
        from posttrainbench.sandbox.relay.server import Relay

        return Relay
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def new_dummy_token() -> str:
    """A fresh per-run token for the agent's API key variable (worthless outside the relay)."""
    return "ptb-relay-" + secrets.token_urlsafe(24)


__all__ = [
    "PRICES_VAR",
    "PROVIDERS",
    "ApiUsage",
    "LlmCall",
    "PriceTable",
    "Relay",
    "agent_env",
    "load_prices",
    "new_dummy_token",
]
