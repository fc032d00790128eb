"""Process-group lifetime on the host: wait with a deadline, terminate, reap leftovers.

The agent leads its own process group (the sandbox starts it with a new session). At the deadline
the whole group gets SIGTERM, then SIGKILL after a grace period. Descendants that left the group
(setsid) are tracked through psutil while the agent runs and killed with it. A run resumed after
the harness died finds its agent by pid *and* creation time, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass

import psutil

from posttrainbench.records import ExitReason

POLL_S = 0.2
KILL_WAIT_S = 5.0


@dataclass
class Finished:
    exit_code: int | None
    signal: int | None
    exit_reason: ExitReason


def create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _descendants(pid: int) -> set[psutil.Process]:
    try:
        return set(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return set()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _alive(procs: set[psutil.Process]) -> set[psutil.Process]:
    """Members still running; zombies are dead (only their parent's reaping is missing)."""
    alive = set()
    for p in procs:
        with contextlib.suppress(psutil.Error):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.add(p)
    return alive


def terminate(pgid: int, known: set[psutil.Process], grace_s: float) -> None:
    """SIGTERM the group and known descendants, wait up to grace_s, then SIGKILL what is left."""
    _signal_group(pgid, signal.SIGTERM)
    for p in known:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    end = time.monotonic() + grace_s
    while time.monotonic() < end and (_group_alive(pgid) or _alive(known)):
        time.sleep(POLL_S)
    _signal_group(pgid, signal.SIGKILL)
    for p in _alive(known):
        with contextlib.suppress(psutil.Error):
            p.kill()
    # kill() only queues the signal: wait until the kernel has actually ended them, so that
    # "returned" means "nothing of the agent is alive".
    end = time.monotonic() + KILL_WAIT_S
    while (_alive(known) or _group_alive(pgid)) and time.monotonic() < end:
        time.sleep(POLL_S / 4)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # Zombies of our own children still count as members; reaped ones do not.
    return any(
        p.info["status"] != psutil.STATUS_ZOMBIE
        for p in psutil.process_iter(["pid", "status"])
        if _pgid(p.info["pid"]) == pgid
    )


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def wait(proc: subprocess.Popen[bytes], deadline: float, grace_s: float) -> Finished:
    """Wait for the agent until the deadline (time.time() epoch); always leaves nothing alive."""
    pgid = proc.pid
    known: set[psutil.Process] = set()
    timed_out = False
    try:
        while True:
            known |= _descendants(proc.pid)
            remaining = deadline - time.time()
            if remaining <= 0:
                timed_out = True
                break
            try:
                proc.wait(timeout=min(POLL_S * 5, remaining))
                break
            except subprocess.TimeoutExpired:
                continue
    finally:
        # On the deadline, on a normal exit (background children may remain) and on an
        # exception in the harness itself: nothing of the agent outlives this call.
        terminate(pgid, known, grace_s if proc.poll() is None else 0.0)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s + 5)
    code = proc.returncode
    if timed_out:
        return Finished(
            exit_code=code, signal=-code if code and code < 0 else None, exit_reason="timed_out"
        )
    if code == 0:
        return Finished(exit_code=0, signal=None, exit_reason="finished")
    if code is not None and code < 0:
        return Finished(exit_code=code, signal=-code, exit_reason="killed")
    return Finished(exit_code=code, signal=None, exit_reason="crashed")


def reap_orphan(pid: int, created: float | None, grace_s: float) -> bool:
    """Kill the process group of an agent left running by a dead harness. True if it was alive."""
    if created is None or create_time(pid) != created:
        return False  # gone, or the pid now belongs to someone else
    known = _descendants(pid) | {psutil.Process(pid)}
    terminate(pid, known, grace_s)
    return True
