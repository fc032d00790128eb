"""The agent contract: given the run's context, say what command to launch in the sandbox.

An agent never starts processes itself and never sees the deadline machinery: the runner launches
its command through the sandbox backend, and the workspace's timer.sh tells it the time left.
Everything agent-specific lives in the agent's module: the CLI it needs (`cli`, installed by
`ptb agents install` at a pinned version), the provider the run's relay forwards to (`provider`),
the config files it wants in its HOME and how it takes its prompt (`AgentLaunch`), how it
continues a conversation (`resumable`), and how its native output stream becomes a trajectory.
The runner stays free of per-agent code.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, ClassVar

from posttrainbench.records import ApiProvider, CliUsage, RunSpec

if TYPE_CHECKING:
    from posttrainbench.agents.failure import CrashKind
    from posttrainbench.agents.trajectory.schema import Trajectory


GUEST_HOME = PurePosixPath("/home/agent")


@dataclass(frozen=True)
class NpmCli:
    """A CLI from npm, pinned: installed into a project-managed prefix, its version verified."""

    package: str
    version: str
    bin: str


@dataclass(frozen=True)
class ApiAccess:
    """The run's relay as the agent sees it: a loopback base URL (without `/v1`) and a per-launch
    dummy token that is worthless outside the relay."""

    provider: ApiProvider
    base_url: str
    token: str


@dataclass(frozen=True)
class AgentContext:
    spec: RunSpec
    workspace: Path | PurePosixPath
    base_model_path: Path | PurePosixPath
    prompt: str  # the text this launch is given: the task, or a re-prompt to continue it
    python: str = sys.executable
    home: Path | PurePosixPath = GUEST_HOME
    api: ApiAccess | None = None
    cli: Path | None = None  # the installed executable (same path inside the sandbox)
    continuation: int = 0  # 0: first launch; k: the k-th re-prompt of a stopped agent


@dataclass(frozen=True)
class AgentLaunch:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # HOME-relative path -> text, written first
    stdin_prompt: bool = False  # feed `ctx.prompt` on stdin (a prompt never goes in argv)
    mounts: list[Path] = field(default_factory=list)  # host dirs, read-only at the same path


class Agent(ABC):
    name: ClassVar[str]
    provider: ClassVar[ApiProvider | None] = None  # the relay's default provider for this agent
    providers: ClassVar[tuple[ApiProvider, ...]] = ()  # those it can speak (default first)
    cli: ClassVar[NpmCli | None] = None
    resumable: ClassVar[bool] = False  # a re-prompt continues the same conversation
    crash: ClassVar[CrashKind] = "cli_crash"  # what a non-zero exit is (agents.failure.CRASHES)
    takes_agent_dir: ClassVar[bool] = False  # runs the user's files (--agent-dir) at /agent

    def default_model(self, provider: ApiProvider | None) -> str | None:
        """The model used when the run names none (fixed into the spec at creation, so that
        reports tell configurations apart)."""
        return None

    def check(self, spec: RunSpec) -> None:
        """Raise a PtbError if the spec lacks something this agent needs (before anything runs)."""
        return None

    @abstractmethod
    def launch(self, ctx: AgentContext) -> AgentLaunch: ...

    def trajectory(self, stream: str) -> Trajectory | None:
        """The agent's native stdout (every launch, concatenated) as a trajectory; None where the
        agent has no structured stream."""
        return None

    def cli_usage(self, stream: str) -> CliUsage | None:
        """The usage the CLI reported about itself in its stream; None where it reports none."""
        return None
