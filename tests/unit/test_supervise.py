"""The supervisor against real processes: deadlines, process groups, escaped children, orphans."""

import subprocess
import sys
import time
from pathlib import Path

import psutil

from posttrainbench.sandbox import supervise


def _start(script: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["bash", "-c", script], start_new_session=True)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_deadline_kills_the_whole_group_and_escaped_children(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # One child in the group, one that escapes it with setsid, one that ignores SIGTERM.
    proc = _start(
        f"sleep 600 & echo $! >> {pids}; setsid sleep 600 & echo $! >> {pids}; "
        f"(trap '' TERM; sleep 600) & echo $! >> {pids}; wait"
    )
    start = time.monotonic()
    done = supervise.wait(proc, time.time() + 2, grace_s=1)
    assert done.exit_reason == "timed_out"
    assert time.monotonic() - start < 10
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 3
    assert all(_gone(pid) for pid in children)


def test_exit_reasons() -> None:
    far = time.time() + 60
    assert supervise.wait(_start("exit 0"), far, 1).exit_reason == "finished"
    crashed = supervise.wait(_start("exit 3"), far, 1)
    assert (crashed.exit_reason, crashed.exit_code) == ("crashed", 3)
    killed = supervise.wait(_start("kill -9 $$"), far, 1)
    assert (killed.exit_reason, killed.signal) == ("killed", 9)


def test_background_leftovers_die_when_the_agent_finishes(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    done = supervise.wait(_start(f"sleep 600 & echo $! > {pidfile}"), time.time() + 60, 1)
    assert done.exit_reason == "finished"
    assert _gone(int(pidfile.read_text()))


def test_reap_orphan_checks_identity() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                            start_new_session=True)  # fmt: skip
    created = supervise.create_time(proc.pid)
    assert not supervise.reap_orphan(proc.pid, (created or 0) + 1.0, grace_s=1)  # recycled pid
    assert proc.poll() is None
    assert supervise.reap_orphan(proc.pid, created, grace_s=1)
    assert proc.wait(timeout=5) is not None
