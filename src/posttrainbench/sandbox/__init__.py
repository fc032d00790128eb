"""Sandbox backends by name. Backends are imported on first use; plug-ins register through the
entry-point group `posttrainbench.sandboxes` (value: a Sandbox subclass)."""

from __future__ import annotations

import functools
import os

from posttrainbench.errors import PtbError
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


DEFAULT_ISOLATING = "bwrap"
NO_ISOLATION_HINT = (
    "install bubblewrap (apt-get install bubblewrap), allow user namespaces (sysctl "
    "kernel.unprivileged_userns_clone=1, or kernel.apparmor_restrict_unprivileged_userns=0), or "
    "pass --sandbox host knowingly (the agent can then read everything you can)"
)


def default_sandbox() -> str:
    """PTB_SANDBOX if set; else `bwrap`, checked to work here. Never `host` silently: where bwrap
    cannot isolate, this raises MissingDependencyError naming why, before anything starts."""
    from posttrainbench.errors import MissingDependencyError

    if chosen := os.environ.get("PTB_SANDBOX"):
        return SANDBOXES.get(chosen).name
    try:
        get_sandbox(DEFAULT_ISOLATING)
    except MissingDependencyError as exc:
        raise MissingDependencyError(
            f"no isolating sandbox works here ({exc.message})", NO_ISOLATION_HINT
        ) from exc
    return DEFAULT_ISOLATING


def default_sandbox_reason() -> tuple[str, str]:
    """The backend a run gets by default here and why, in words (`default_sandbox`'s errors)."""
    name = default_sandbox()
    if os.environ.get("PTB_SANDBOX"):
        return name, f"PTB_SANDBOX={os.environ['PTB_SANDBOX']}"
    how = (
        "as root, the agent runs as a per-run unprivileged uid"
        if os.geteuid() == 0
        else "the agent runs in unprivileged user namespaces"
    )
    return name, f"bubblewrap isolates here: {how}; --sandbox or PTB_SANDBOX picks another"


def isolates(name: str) -> bool | None:
    """Whether the backend `name` isolates the agent; None where no backend of that name is
    registered here (a plug-in not installed, the published reference table)."""
    try:
        return SANDBOXES.get(name).capabilities.isolation
    except PtbError:
        return None


def get_sandbox(name: str) -> Sandbox:
    """The backend, checked once per process (a check may start a probe process)."""
    return _checked(SANDBOXES.get(name))


@functools.cache
def _checked(cls: type[Sandbox]) -> Sandbox:
    sandbox = cls()
    sandbox.check()
    return sandbox


__all__ = [
    "SANDBOXES", "Capabilities", "LaunchRequest", "Sandbox", "default_sandbox",
    "default_sandbox_reason", "get_sandbox", "isolates",
]  # fmt: skip
