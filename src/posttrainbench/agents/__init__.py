"""Agent scaffolds: one module per agent, each an `Agent` that says what command to launch."""

from __future__ import annotations

from posttrainbench.agents.base import Agent, AgentContext, AgentLaunch
from posttrainbench.catalog import AGENTS
from posttrainbench.registry import import_ref


def get_agent(name: str) -> Agent:
    cls = import_ref(AGENTS.get(name).impl)
    assert isinstance(cls, type) and issubclass(cls, Agent)
    return cls()


__all__ = ["Agent", "AgentContext", "AgentLaunch", "get_agent"]
