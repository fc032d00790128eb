"""The sandbox contract: launch the agent's command in its own process group, in its workspace.

A backend declares its `Capabilities` so a run can be refused before it starts (no GPU passthrough,
no egress control) rather than after ten hours. `check()` raises `MissingDependencyError` when the
backend cannot work on this machine. The runner owns deadlines and signals; a backend only starts
the process, with `start_new_session=True`, so the whole agent is one process group.
"""

from __future__ import annotations

import os
import re
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH)", re.IGNORECASE)


@dataclass(frozen=True)
class Capabilities:
    isolation: bool  # the agent cannot read or write outside its workspace and read-only mounts
    network_policy: bool  # egress is filtered and logged
    gpu: bool  # GPUs are reachable inside


@dataclass(frozen=True)
class LaunchRequest:
    argv: list[str]
    workdir: Path
    env: dict[str, str]
    stdout: Path
    stderr: Path
    read_only: list[Path] = field(default_factory=list)  # model cache, data: mounted read-only


def scrubbed_environ() -> dict[str, str]:
    """The harness's environment without anything that looks like a credential."""
    return {k: v for k, v in os.environ.items() if not SECRET_NAME.search(k)}


class Sandbox(ABC):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def check(self) -> None:
        """Raise MissingDependencyError if this backend cannot run here."""
        return None

    @abstractmethod
    def launch(self, request: LaunchRequest) -> subprocess.Popen[bytes]:
        """Start the command; the returned process leads a new process group."""
