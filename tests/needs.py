"""Components the tests need, checked so that a missing one FAILS with its install hint (as the
SLURM tests do) instead of skipping: a skipped sandbox test looks like a passed one in CI.
Mark a test `@pytest.mark.needs("bwrap", "npm")` (tests/conftest.py checks it before the test)
or call `require(...)` inside it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Component:
    present: Callable[[], bool]
    hint: str
    after: str | None = None  # a component checked first: when it is missing, only it is named


def _bwrap_isolates() -> bool:
    from posttrainbench.evaluate import code_sandbox

    return code_sandbox.bwrap_works()


COMPONENTS: dict[str, Component] = {
    "bwrap": Component(lambda: shutil.which("bwrap") is not None, "apt-get install bubblewrap"),
    "bwrap-namespaces": Component(
        _bwrap_isolates,
        "bubblewrap cannot create its namespaces here: allow user namespaces (sysctl "
        "kernel.unprivileged_userns_clone=1, kernel.apparmor_restrict_unprivileged_userns=0)",
        after="bwrap",
    ),
    "socat": Component(lambda: shutil.which("socat") is not None, "apt-get install socat"),
    "npm": Component(
        lambda: shutil.which("npm") is not None,
        "apt-get install nodejs npm (Node.js 20 or newer), or run scripts/install-system.sh",
    ),
    "chromium": Component(
        lambda: shutil.which("chromium", path="/usr/bin") is not None,
        "apt-get install chromium (the browser tests drive /usr/bin/chromium)",
    ),
    "podman": Component(
        lambda: shutil.which("podman") is not None and shutil.which("runc") is not None,
        "apt-get install podman runc",
    ),
    "python3": Component(
        lambda: shutil.which("python3", path="/usr/bin") is not None, "apt-get install python3"
    ),
}


def require(*names: str) -> None:
    """Fail the calling test, naming every missing component and how to install it."""
    lacking: list[str] = []
    for name in names:
        first = COMPONENTS[name].after
        if first is not None and not COMPONENTS[first].present():
            name = first
        if name not in lacking and not COMPONENTS[name].present():
            lacking.append(name)
    if lacking:
        pytest.fail(
            "missing: " + "; ".join(f"{n} ({COMPONENTS[n].hint})" for n in lacking),
            pytrace=False,
        )
