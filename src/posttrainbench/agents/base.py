"""The agent contract: given the run's context, say what command to launch in the sandbox.

An agent never starts processes itself and never sees the deadline machinery: the runner launches
its command through the sandbox backend, and the workspace's timer.sh tells it the time left.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from posttrainbench.records import RunSpec


@dataclass(frozen=True)
class AgentContext:
    spec: RunSpec
    workspace: Path
    base_model_path: Path
    prompt: str
    python: str = sys.executable


@dataclass(frozen=True)
class AgentLaunch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class Agent(ABC):
    name: ClassVar[str]

    def check(self, spec: RunSpec) -> None:
        """Raise a PtbError if the spec lacks something this agent needs (before anything runs)."""
        return None

    @abstractmethod
    def launch(self, ctx: AgentContext) -> AgentLaunch: ...
