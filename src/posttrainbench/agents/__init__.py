"""Agent scaffolds: one module per agent, each an `Agent` that says what command to launch."""

from __future__ import annotations

from posttrainbench.agents.base import Agent, AgentContext, AgentLaunch
from posttrainbench.catalog import AGENTS
from posttrainbench.registry import import_ref


def get_agent(name: str) -> Agent:
    ref = AGENTS.get(name).impl
    cls = import_ref(ref)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise TypeError(f"agent {name!r} ({ref}) is not an Agent subclass")
    return cls()


__all__ = ["Agent", "AgentContext", "AgentLaunch", "get_agent"]
