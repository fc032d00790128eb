"""The sandbox contract: launch the agent's command, isolated as far as the backend can.

One contract for every backend. The runner describes the launch in host terms (`LaunchRequest`):
what to mount where and how (`Mount`), which harness-side unix sockets to bridge into the sandbox
as `127.0.0.1:PORT` (`Bridge`: the API relay, the egress proxy), the network policy, the GPUs and
the limits. The guest paths come from `GUEST` (isolating backends) or stay the host paths
(`host`); the runner asks `Sandbox.guest_layout` and writes guest paths into the prompt and the
environment.

`launch` returns a `Launched`: the local process the runner waits on (it leads a new process
group) and a serialisable `sandbox_id`, kept in `AgentAttempt.sandbox_id`, from which `stop`
finds and stops the sandbox even from another harness process on resume — killing a `docker run`
client does not stop its container. `check()` raises `MissingDependencyError` when the backend
cannot work on this machine; `Capabilities` let a run be refused before it starts.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import ClassVar

from posttrainbench.records import NetworkPolicy

# The agent's loopback ports inside a sandbox.
BRIDGE_PORTS = {"relay": 4000, "egress": 3128, "scoring": 4100}


@dataclass(frozen=True)
class Capabilities:
    isolation: bool  # the agent cannot read or write outside its workspace and read-only mounts
    network_policy: bool  # egress is filtered and logged
    gpu: bool  # GPUs are reachable inside
    limits: tuple[str, ...] = ()  # the limits this backend enforces (see Limits)


@dataclass(frozen=True)
class GuestLayout:
    """Where the agent finds things, as paths inside the sandbox."""

    workspace: PurePosixPath
    model: PurePosixPath
    home: PurePosixPath


# Isolating backends mount the run here. Deliberately short and free of host names.
GUEST = GuestLayout(
    workspace=PurePosixPath("/workspace"),
    model=PurePosixPath("/model"),
    home=PurePosixPath("/home/agent"),
)
GUEST_SOCKETS = PurePosixPath("/run/ptb")  # bridged unix sockets live here inside
GUEST_USER = "agent"  # the agent's user name inside isolating backends ($USER, bwrap's passwd)


@dataclass(frozen=True)
class Mount:
    host: Path
    guest: PurePosixPath
    writable: bool = False


@dataclass(frozen=True)
class Bridge:
    """A harness-side unix socket the agent reaches as 127.0.0.1:port."""

    name: str  # "relay", "egress": also the socket's file name inside GUEST_SOCKETS
    socket: Path
    port: int


@dataclass(frozen=True)
class Limits:
    memory_bytes: int | None = None  # resident memory of the whole sandbox
    processes: int | None = None  # RLIMIT_NPROC (and pids.max where a cgroup is available)
    open_files: int | None = None  # RLIMIT_NOFILE
    file_bytes: int | None = None  # RLIMIT_FSIZE: the largest single file the agent can write


@dataclass(frozen=True)
class LaunchRequest:
    argv: list[str]
    workdir: Path  # host path of the workspace; the agent starts in its guest path
    env: dict[str, str]  # the complete environment of the agent, in guest paths
    stdout: int  # file descriptors the agent writes to (capped by the runner)
    stderr: int
    run_id: str = "run"
    mounts: list[Mount] = field(default_factory=list)  # besides the workspace (always rw)
    bridges: list[Bridge] = field(default_factory=list)
    network: NetworkPolicy = "none"
    gpus: list[int] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)
    image: str | None = None  # container image / .sif for the backends that need one
    home: Path | None = None  # host folder bound read-write as the guest HOME; None: a fresh one
    tmp: Path | None = None  # host folder bound as /tmp (kept for integrity); None: a fresh one
    var_tmp: Path | None = None  # host folder bound as /var/tmp; None: a fresh one
    stdin: int | None = None  # file descriptor the agent reads as stdin; None: /dev/null


@dataclass
class Launched:
    proc: subprocess.Popen[bytes]
    sandbox_id: str | None = None  # what `stop` needs to find the sandbox again
    limits_enforced: list[str] = field(default_factory=list)
    limits_not_enforced: list[str] = field(default_factory=list)


class Sandbox(ABC):
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    def check(self) -> None:
        """Raise MissingDependencyError if this backend cannot run here."""
        return None

    def guest_layout(self, workspace: Path, model: Path, home: Path) -> GuestLayout:
        """The agent's view of the workspace, the base model and its HOME."""
        return GUEST

    def bridge_port(self, name: str) -> int:
        """The loopback port the agent reaches bridge `name` on."""
        return BRIDGE_PORTS[name]

    @abstractmethod
    def launch(self, request: LaunchRequest) -> Launched:
        """Start the command; the returned process leads a new process group."""

    def stop(self, sandbox_id: str, grace_s: float) -> None:
        """Stop what `launch` started, given its id. Idempotent; called after every attempt."""
        return None
