"""Which sandbox a run gets by default and why (what `ptb demo` says before it starts)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from posttrainbench import sandbox
from posttrainbench.errors import MissingDependencyError


@pytest.fixture(autouse=True)
def _fresh_checks() -> Iterator[None]:
    sandbox._checked.cache_clear()
    yield
    sandbox._checked.cache_clear()


@pytest.mark.needs("bwrap-namespaces", "socat")
def test_bwrap_by_default_saying_how_it_isolates_for_this_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PTB_SANDBOX", raising=False)
    name, why = sandbox.default_sandbox_reason()
    how = (
        "as root, the agent runs as a per-run unprivileged uid"
        if os.geteuid() == 0
        else ("the agent runs in unprivileged user namespaces")
    )
    assert (name, why) == ("bwrap", f"bubblewrap isolates here: {how}; --sandbox or "
                                    "PTB_SANDBOX picks another")  # fmt: skip


def test_the_environment_variable_is_named_as_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_SANDBOX", "host")
    assert sandbox.default_sandbox_reason() == ("host", "PTB_SANDBOX=host")


def test_without_bubblewrap_it_refuses_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.delenv("PTB_SANDBOX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependencyError) as err:
        sandbox.default_sandbox_reason()
    assert err.value.message.startswith("no isolating sandbox works here")
    assert err.value.hint == sandbox.NO_ISOLATION_HINT


@pytest.mark.needs("bwrap")
def test_bwrap_isolates_here_or_runs_are_refused_naming_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where user namespaces are off for this user (scripts/test-unprivileged.sh then runs only
    this case), nothing falls back to `host`: the refusal names bubblewrap's own reason."""
    monkeypatch.delenv("PTB_SANDBOX", raising=False)
    probe = subprocess.run(
        ["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True, text=True
    )
    if probe.returncode == 0:
        assert sandbox.default_sandbox_reason()[0] == "bwrap"
        return
    with pytest.raises(MissingDependencyError) as err:
        sandbox.default_sandbox_reason()
    reason = probe.stderr.strip().splitlines()[-1]
    assert err.value.message == (
        f"no isolating sandbox works here (bubblewrap cannot create namespaces here: {reason})"
    )
    assert err.value.hint == sandbox.NO_ISOLATION_HINT
