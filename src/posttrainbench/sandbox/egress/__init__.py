"""Network egress of a sandboxed agent: the policy (which hosts), the harness-side forward proxy
that enforces it over a unix socket, and the egress.jsonl log that the integrity checks read."""

from __future__ import annotations

from posttrainbench.sandbox.egress.log import (
    EgressDecision,
    EgressEvent,
    EgressSummary,
    read_events,
    summarize,
)
from posttrainbench.sandbox.egress.policy import (
    DEFAULT_ALLOW_HOSTS,
    EgressPolicy,
    NetworkPolicy,
    Resolver,
    is_internal,
    parse_allow_host,
    resolve_host,
)
from posttrainbench.sandbox.egress.proxy import EgressProxy

__all__ = [
    "DEFAULT_ALLOW_HOSTS",
    "EgressDecision",
    "EgressEvent",
    "EgressPolicy",
    "EgressProxy",
    "EgressSummary",
    "NetworkPolicy",
    "Resolver",
    "is_internal",
    "parse_allow_host",
    "read_events",
    "resolve_host",
    "summarize",
]
