"""The monitor's size bound (`--workspace-gb`): the agent's HOME counts against it with the
workspace, so a HOME filled past it stops the agent the way a full workspace does."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from posttrainbench.sandbox.monitor import Monitor, dir_bytes

MB = 2**20


@pytest.fixture
def agent() -> Iterator[subprocess.Popen[bytes]]:
    """A stand-in agent: a process leading its own process group, as launched agents do."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _fill(folder: Path, mb: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "blob").write_bytes(b"\0" * int(mb * MB))
    return folder


def _monitor(pid: int, tmp_path: Path, home: Path | None, limit_mb: float) -> Monitor:
    return Monitor(
        pid,
        tmp_path / "workspace",
        tmp_path / "monitor.csv",
        60,
        workspace_limit=int(limit_mb * MB),
        home=home,
    )


def test_dir_bytes_counts_files_and_never_follows_links(tmp_path: Path) -> None:
    _fill(tmp_path / "elsewhere", 3)
    home = _fill(tmp_path / "home", 1)
    (home / "big-link").symlink_to(tmp_path / "elsewhere" / "blob")
    (home / "dir-link").symlink_to(tmp_path / "elsewhere")
    assert MB <= dir_bytes(home) < MB + 4096


def test_home_and_workspace_together_over_the_limit_stop_the_agent(
    agent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    _fill(tmp_path / "workspace", 0.6)
    home = _fill(tmp_path / "home", 0.6)  # each under the 1 MB bound, both together over it
    monitor = _monitor(agent.pid, tmp_path, home, 1)
    row = monitor.sample()
    assert agent.wait(timeout=30) == -9  # the process group was killed
    assert monitor.over_limit == (
        "workspace over its limit: 1.2 MB > 1.0 MB (workspace 0.6 MB, HOME 0.6 MB)"
    )
    assert float(row["home_mb"]) == pytest.approx(0.6, abs=0.05)


def test_an_agent_filling_only_its_home_is_stopped(
    agent: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    (tmp_path / "workspace").mkdir()
    home = _fill(tmp_path / "home", 2)
    monitor = _monitor(agent.pid, tmp_path, home, 1)
    monitor.sample()
    assert agent.wait(timeout=30) == -9
    assert monitor.over_limit is not None


def test_under_the_limit_the_agent_runs_on(agent: subprocess.Popen[bytes], tmp_path: Path) -> None:
    _fill(tmp_path / "workspace", 0.3)
    home = _fill(tmp_path / "home", 0.3)
    monitor = _monitor(agent.pid, tmp_path, home, 1)
    monitor.sample()
    assert monitor.over_limit is None and agent.poll() is None
