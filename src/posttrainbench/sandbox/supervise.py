"""Process lifetime on the host: wait with a deadline, terminate, and leave nothing behind.

The agent leads its own process group (the sandbox starts it with a new session). At the deadline
the whole group gets SIGTERM, then SIGKILL after a grace period. Descendants that left the group
(setsid) are tracked through psutil while the agent runs and killed with it. Descendants that
detached *after their parent exited* are caught two more ways: the harness is a child subreaper
(Linux `PR_SET_CHILD_SUBREAPER`), so orphans are re-parented to it instead of to init; and every
agent process inherits the attempt's token (`PTB_AGENT_TOKEN`) in its environment, which finds
survivors even after the harness itself died. `sweep` kills whatever is found and verifies that
nothing survives. A run resumed after the harness died finds its agent by pid *and* creation time,
so a recycled pid is never killed. Cleanup runs with SIGINT/SIGTERM held back (`shielded`), so a
second Ctrl-C cannot interrupt it halfway.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil

from posttrainbench.errors import InfrastructureError
from posttrainbench.records import ExitReason, FoundBy, ProcessInfo

POLL_S = 0.2
KILL_WAIT_S = 5.0
TOKEN_VAR = "PTB_AGENT_TOKEN"
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_PDEATHSIG = 1
_SHIELDED = (signal.SIGINT, signal.SIGTERM)
_SWEEP_ROUNDS = 3  # kill rounds: each catches what was forked during the one before


def _prctl(option: int, value: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # not Linux
        return False


def become_subreaper() -> bool:
    """Make orphaned descendants of this process re-parent to it (Linux ≥ 3.4)."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent() -> None:
    """preexec_fn for helper subprocesses: SIGKILL them when the harness dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Defer SIGINT/SIGTERM until the block ends, then deliver the first one that came.

    Python runs signal handlers in the main thread whichever thread the kernel picked, so a
    thread signal mask would not hold (log pumps and the monitor are threads): the handlers are
    swapped instead. Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {sig: signal.getsignal(sig) for sig in _SHIELDED}
    for sig in _SHIELDED:
        signal.signal(sig, lambda signum, _frame: pending.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        if pending:
            signal.raise_signal(pending[0])


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
        # exception in the harness itself: nothing of the agent's group outlives this call.
        with shielded():
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


def reap_orphan(pid: int | None, created: float | None, grace_s: float) -> bool:
    """Kill the process group of an agent left running by a dead harness. True if it was alive."""
    if pid is None or created is None or create_time(pid) != created:
        return False  # never recorded, gone, or the pid now belongs to someone else
    try:
        known = _descendants(pid) | {psutil.Process(pid)}
    except psutil.Error:
        return False
    with shielded():
        terminate(pid, known, grace_s)
    return True


def _has_token(proc: psutil.Process, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def by_token(token: str) -> set[psutil.Process]:
    """Live processes whose environment carries this attempt's token."""
    marker = f"{TOKEN_VAR}={token}".encode()
    me = os.getpid()
    return {p for p in _alive(set(psutil.process_iter())) if p.pid != me and _has_token(p, marker)}


def adopted_since(started: float, exclude: set[int]) -> set[psutil.Process]:
    """Descendants of the harness created at or after `started` (orphans re-parented to us)."""
    found = set()
    for p in _alive(_descendants(os.getpid())):
        with contextlib.suppress(psutil.Error):
            if p.pid not in exclude and p.create_time() >= started - 1:
                found.add(p)
    return found


def _describe(proc: psutil.Process, found_by: FoundBy) -> ProcessInfo:
    try:
        name, cmd = proc.name(), " ".join(proc.cmdline())
    except psutil.Error:
        name, cmd = "", ""
    return ProcessInfo(pid=proc.pid, name=name, cmdline=cmd[:300], found_by=found_by)


def _reap_children(procs: set[psutil.Process]) -> None:
    """Collect the exit status of adopted orphans, so they do not linger as our zombies."""
    for p in procs:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(p.pid, os.WNOHANG)


def _by_tokens(tokens: list[str]) -> dict[int, tuple[psutil.Process, FoundBy]]:
    return {p.pid: (p, "token") for token in tokens for p in by_token(token)}


def sweep(
    tokens: list[str], grace_s: float, *, adopted: set[psutil.Process] | None = None
) -> list[ProcessInfo]:
    """Kill every process left by the agent; raise InfrastructureError if any survives.

    A process forked between the scan and the kill (a loop's short-lived child) is found by its
    token in the next round: only what is still alive after the last round is a survivor."""
    found: dict[int, tuple[psutil.Process, FoundBy]] = {}
    for p in adopted or set():
        found[p.pid] = (p, "subreaper")
    for pid, entry in _by_tokens(tokens).items():
        found.setdefault(pid, entry)
    killed: dict[int, tuple[psutil.Process, FoundBy]] = {}
    infos: list[ProcessInfo] = []
    for _ in range(_SWEEP_ROUNDS):
        batch = {pid: entry for pid, entry in found.items() if pid not in killed}
        if not batch:
            break
        infos += [_describe(p, how) for p, how in batch.values()]
        procs = {p for p, _ in batch.values()}
        with shielded():
            terminate_all(procs, grace_s)
            _reap_children(procs)
        killed.update(batch)
        found = _by_tokens(tokens)
    if not killed:
        return []
    survivors = _alive({p for p, _ in killed.values()}) | {
        p for p, _ in _by_tokens(tokens).values()
    }
    if survivors:
        pids = ", ".join(str(p.pid) for p in survivors)
        raise InfrastructureError(
            f"agent process(es) {pids} survived SIGKILL",
            "a process in uninterruptible sleep (D state)? check `ps -o pid,stat,cmd -p PID`",
        )
    return sorted(infos, key=lambda i: i.pid)


def terminate_all(procs: set[psutil.Process], grace_s: float) -> None:
    """SIGTERM each process (and its group), wait up to grace_s, SIGKILL what is left."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    end = time.monotonic() + grace_s
    while time.monotonic() < end and _alive(procs):
        time.sleep(POLL_S)
    for p in _alive(procs):
        with contextlib.suppress(psutil.Error):
            p.kill()
    end = time.monotonic() + KILL_WAIT_S
    while _alive(procs) and time.monotonic() < end:
        time.sleep(POLL_S / 4)


@dataclass
class Completed:
    returncode: int | None
    timed_out: bool


def run_bounded(
    cmd: list[str],
    log: Path,
    timeout_s: float,
    grace_s: float,
    *,
    append: bool = False,
    env: Mapping[str, str] | None = None,
) -> Completed:
    """Run a harness helper (the evaluation) in its own process group with a time limit.

    The child dies with the harness (PDEATHSIG), and on timeout or on an interruption of the
    harness its whole group is terminated before this returns or raises. `env` replaces the
    harness's environment."""
    with log.open("ab" if append else "wb") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,
            env=dict(env) if env is not None else None,
        )  # fmt: skip
    try:
        proc.wait(timeout=timeout_s)
        return Completed(proc.returncode, timed_out=False)
    except subprocess.TimeoutExpired:
        return Completed(None, timed_out=True)
    finally:
        if proc.poll() is None or _group_alive(proc.pid):
            with shielded():
                terminate(proc.pid, _alive(_descendants(proc.pid)), grace_s)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=KILL_WAIT_S)
