"""Sandbox backends by name. Backends are imported on first use; plug-ins register through the
entry-point group `posttrainbench.sandboxes` (value: a Sandbox subclass)."""

from __future__ import annotations

import functools
import os

from posttrainbench.registry import Registry
from posttrainbench.sandbox.base import Capabilities, LaunchRequest, Sandbox

SANDBOXES: Registry[type[Sandbox]] = Registry("sandbox", Sandbox)
SANDBOXES.register("bwrap", "posttrainbench.sandbox.bwrap:BwrapSandbox")
SANDBOXES.register("docker", "posttrainbench.sandbox.container:DockerSandbox")
SANDBOXES.register("podman", "posttrainbench.sandbox.container:PodmanSandbox")
SANDBOXES.register(
    "apptainer", "posttrainbench.sandbox.apptainer:ApptainerSandbox", aliases=("singularity",)
)
SANDBOXES.register("host", "posttrainbench.sandbox.host:HostSandbox")


def default_sandbox() -> str:
    """PTB_SANDBOX if set; else `bwrap` where it works here, else `host` (which isolates
    nothing, and says so)."""
    from posttrainbench.errors import MissingDependencyError

    if chosen := os.environ.get("PTB_SANDBOX"):
        return SANDBOXES.get(chosen).name
    try:
        get_sandbox("bwrap")
    except MissingDependencyError:
        return "host"
    return "bwrap"


def get_sandbox(name: str) -> Sandbox:
    """The backend, checked once per process (a check may start a probe process)."""
    return _checked(SANDBOXES.get(name))


@functools.cache
def _checked(cls: type[Sandbox]) -> Sandbox:
    sandbox = cls()
    sandbox.check()
    return sandbox


__all__ = [
    "SANDBOXES", "Capabilities", "LaunchRequest", "Sandbox", "default_sandbox", "get_sandbox",
]  # fmt: skip
