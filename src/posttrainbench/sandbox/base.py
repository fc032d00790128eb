"""The sandbox contract: launch the agent's command in its own process group, in its workspace.

A backend declares its `Capabilities` so a run can be refused before it starts (no GPU passthrough,
no egress control) rather than after ten hours. `check()` raises `MissingDependencyError` when the
backend cannot work on this machine. The runner owns deadlines and signals; a backend only starts
the process, with `start_new_session=True`, so the whole agent is one process group. The
environment it gets is built by the runner from an allow-list (`sandbox/env.py`).
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True)
class Capabilities:
    isolation: bool  # the agent cannot read or write outside its workspace and read-only mounts
    network_policy: bool  # egress is filtered and logged
    gpu: bool  # GPUs are reachable inside


@dataclass(frozen=True)
class LaunchRequest:
    argv: list[str]
    workdir: Path
    env: dict[str, str]  # the complete environment of the agent (already allow-listed)
    stdout: int  # file descriptors the agent writes to (capped by the runner)
    stderr: int
    read_only: list[Path] = field(default_factory=list)  # model cache, data: mounted read-only


class Sandbox(ABC):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def check(self) -> None:
        """Raise MissingDependencyError if this backend cannot run here."""
        return None

    @abstractmethod
    def launch(self, request: LaunchRequest) -> subprocess.Popen[bytes]:
        """Start the command; the returned process leads a new process group."""
