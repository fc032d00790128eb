"""Sandbox backends by name. Backends are imported on first use; plug-ins register through the
entry-point group `posttrainbench.sandboxes` (value: a Sandbox subclass)."""

from __future__ import annotations

from posttrainbench.registry import Registry
from posttrainbench.sandbox.base import Capabilities, LaunchRequest, Sandbox

SANDBOXES: Registry[type[Sandbox]] = Registry("sandbox", Sandbox)
SANDBOXES.register("host", "posttrainbench.sandbox.host:HostSandbox")


def get_sandbox(name: str) -> Sandbox:
    sandbox = SANDBOXES.get(name)()
    sandbox.check()
    return sandbox


__all__ = ["SANDBOXES", "Capabilities", "LaunchRequest", "Sandbox", "get_sandbox"]
