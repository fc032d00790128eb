"""The supervisor against real processes: deadlines, process groups, escaped children, orphans."""

import os
import signal
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


def _wait_for(path: Path, timeout: float = 10) -> str:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} never written")


def test_writer_detached_after_its_parent_exited_is_swept(tmp_path: Path) -> None:
    """setsid + double fork: the writer is re-parented away from the agent's tree and group."""
    supervise.become_subreaper()
    pid_file, out = tmp_path / "pid", tmp_path / "out"
    env = {"PATH": "/usr/bin:/bin", supervise.TOKEN_VAR: "tok-detached"}
    started = time.time()
    proc = subprocess.Popen(
        ["bash", "-c", f"(setsid bash -c 'echo $$ > {pid_file}; while :; do date >> {out}; "
         "sleep 0.1; done' &) ; exit 0"],
        env=env, start_new_session=True,
    )  # fmt: skip
    assert proc.wait(timeout=10) == 0
    writer = int(_wait_for(pid_file))
    assert not _gone(writer), "the detached writer outlived its parent"
    assert psutil.Process(writer).ppid() == os.getpid(), "re-parented to us, the subreaper"
    killed = supervise.sweep(["tok-detached"], 1, adopted=supervise.adopted_since(started, set()))
    # The writer is our adopted child; its short-lived `sleep 0.1` children may be found either
    # way (one forked after the adoption scan carries the token).
    found = {k.pid: k.found_by for k in killed}
    assert found[writer] == "subreaper"
    assert set(found.values()) <= {"subreaper", "token"}
    assert all(_gone(pid) for pid in found)
    assert list(supervise.by_token("tok-detached")) == []  # no process left that could write


def test_token_finds_processes_after_the_harness_lost_them(tmp_path: Path) -> None:
    """A survivor that is no descendant of ours (the harness died and was restarted)."""
    pid_file = tmp_path / "pid"
    env = {"PATH": "/usr/bin:/bin", supervise.TOKEN_VAR: "tok-orphan"}
    subprocess.run(
        ["bash", "-c", f"setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! > {pid_file}"],
        env=env, check=True,
    )  # fmt: skip
    pid = int(_wait_for(pid_file))
    assert {p.pid for p in supervise.by_token("tok-orphan")} == {pid}
    killed = supervise.sweep(["tok-orphan"], 1)
    assert [(k.pid, k.found_by) for k in killed] == [(pid, "token")]
    assert "sleep 600" in killed[0].cmdline and _gone(pid)
    assert supervise.sweep(["tok-orphan"], 1) == []


def test_run_bounded_kills_the_whole_group_on_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    cmd = ["bash", "-c", f"sleep 600 & echo $! > {pid_file}; wait"]
    done = supervise.run_bounded(cmd, tmp_path / "log", timeout_s=1, grace_s=1)
    assert done.timed_out and done.returncode is None
    assert _gone(int(pid_file.read_text()))


def test_shielded_holds_signals_until_the_block_ends() -> None:
    got: list[int] = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    try:
        supervise._SHIELDED = (*supervise._SHIELDED, signal.SIGUSR1)  # type: ignore[misc]
        with supervise.shielded():
            os.kill(os.getpid(), signal.SIGUSR1)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # runs pending Python handlers now
            assert got == []
        assert got == [signal.SIGUSR1]
    finally:
        supervise._SHIELDED = supervise._SHIELDED[:-1]  # type: ignore[misc]
        signal.signal(signal.SIGUSR1, old)
