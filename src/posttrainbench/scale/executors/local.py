"""The `local` executor: a pool of `slots` parallel runs on this machine, each on its own GPUs.

Each job is a subprocess leading its own session (so its process group can be signalled as one),
with `PTB_GPUS` naming the GPUs of the pool it holds until it ends (`none` for a CPU-only job), and
its stdout/stderr appended to `sweep_dir/.jobs/local/<run_id>.{out,err}`. Jobs start first-fit in
the order given as soon as a slot and enough free GPUs are there; a job needing more GPUs than the
pool has ends at once with returncode None.

Nothing outlives the driver: every job gets `PR_SET_PDEATHSIG=SIGTERM` (the harness records where
it stopped and exits 143; `ptb run --resume` continues it). The kernel sends it when the *thread*
that forked the job dies, so jobs are forked by a launcher thread that lives as long as `run()`,
whichever thread consumes the generator. An exception in the driver (KeyboardInterrupt, the CLI's
SIGTERM → HarnessInterrupted) or closing the generator early terminates the running jobs: SIGTERM
to their groups, SIGKILL after `options.grace_s`. A job past `time_limit_s` is ended the same
way; members of a job's group left behind when its leader exits are killed before its GPUs are
freed.

A GPU the harness's preflight refused (`avoid_gpus`: another process holds it, or it is broken)
is handed to no job for `refused_cooldown_s` (option, default 600 s) while other GPUs can take the
work, so one busy GPU does not fail every run that would have landed on it; when it alone is left
the pool waits out the cooldown and tries it again.

With more than one slot, each job gets its share of this machine's CPUs as `OMP_NUM_THREADS` and
`MKL_NUM_THREADS` (CPUs // slots, at least 1) unless the caller set either: every run's torch
otherwise starts a thread per core, and N runs' spinning threads on the same cores slow all of
them down many times over (the harness passes both to the agent and to the evaluation).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import selectors
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

from posttrainbench.errors import ConfigError
from posttrainbench.sandbox.gpu import GPUS_VAR, require_gpus
from posttrainbench.sandbox.supervise import shielded
from posttrainbench.scale.executors.base import Executor, ExecutorConfig, Finished, Job

DEFAULT_GRACE_S = 60.0
DEFAULT_REFUSED_COOLDOWN_S = 600.0
POLL_S = 0.05  # only where pidfds are missing (not Linux ≥ 5.3)
_PR_SET_PDEATHSIG = 1
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
log = logging.getLogger(__name__)


def thread_env(slots: int, environ: Mapping[str, str]) -> dict[str, str]:
    """Each of `slots` parallel jobs' share of the CPUs, as thread counts (none with one slot,
    or when the caller set one of them)."""
    if slots <= 1 or any(v in environ for v in THREAD_VARS):
        return {}
    share = str(max(1, len(os.sched_getaffinity(0)) // slots))
    return dict.fromkeys(THREAD_VARS, share)


def _pdeathsig_preexec() -> Callable[[], None]:
    """A preexec_fn: SIGTERM the child when the forking thread dies, or at once if the driver
    died before the child could ask for it. libc is loaded here, in the parent, not after fork."""
    parent = os.getpid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        prctl = None

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the process has exited, without reaping it (its pid and group stay reserved)."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


@dataclass
class _Running:
    job: Job
    proc: subprocess.Popen[bytes]
    gpus: list[int]
    started: float
    pidfd: int | None
    deadline: float
    term_at: float | None = None  # when SIGTERM went out (time limit)
    extra: dict[str, object] = field(default_factory=dict)


class LocalExecutor(Executor):
    name: ClassVar[str] = "local"

    def __init__(self, config: ExecutorConfig, sweep_dir: Path) -> None:
        super().__init__(config, sweep_dir)
        if len(set(config.gpus)) != len(config.gpus):
            raise ConfigError(
                f"executor gpus lists a GPU twice: {config.gpus}", "list each GPU index once"
            )
        self.grace_s = float(config.options.get("grace_s", DEFAULT_GRACE_S))
        self.cooldown_s = float(
            config.options.get("refused_cooldown_s", DEFAULT_REFUSED_COOLDOWN_S)
        )
        self.log_dir = sweep_dir / ".jobs" / "local"
        self._node = socket.gethostname()
        self._avoid: dict[int, float] = {}  # GPU → monotonic time it may be handed out again

    @classmethod
    def check_config(cls, config: ExecutorConfig) -> None:
        if config.gpus_per_run > len(config.gpus):
            raise ConfigError(
                f"executor gpus_per_run = {config.gpus_per_run} but its pool gpus lists "
                f"{len(config.gpus)} GPU(s)",
                "list this machine's GPUs in [executor] gpus, e.g. gpus = [0, 1]",
            )
        require_gpus(config.gpus, "executor gpus", "set gpus = [] and gpus_per_run = 0")

    def avoid_gpus(self, gpus: Sequence[int], why: str) -> None:
        until = time.monotonic() + self.cooldown_s
        for g in gpus:
            if g in self.config.gpus:
                self._avoid[g] = until
                log.warning("GPU %s kept out of the pool for %.0f s: %s", g, self.cooldown_s, why)

    def _usable(self, free: list[int]) -> list[int]:
        now = time.monotonic()
        return [g for g in free if self._avoid.get(g, 0.0) <= now]

    def run(self, jobs: Sequence[Job]) -> Iterator[Finished]:
        pool = list(self.config.gpus)
        pending: deque[Job] = deque()
        for job in jobs:
            if job.gpus > len(pool):
                yield Finished(
                    job, None, node=self._node,
                    note=f"needs {job.gpus} GPUs, the local pool has {len(pool)} ({pool})",
                )  # fmt: skip
            else:
                pending.append(job)
        if not pending:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        free = list(pool)
        running: dict[int, _Running] = {}
        selector = selectors.DefaultSelector()
        launcher = ThreadPoolExecutor(1, thread_name_prefix="ptb-local-launcher")
        starting: Future[_Running] | None = None  # interrupted while this job was being forked
        try:
            while pending or running:
                for job in self._startable(pending, self._usable(free), len(running)):
                    gpus = self._usable(free)[: job.gpus]
                    free = [g for g in free if g not in gpus]
                    starting = launcher.submit(self._start, job, gpus)
                    try:
                        r = starting.result()
                    except OSError as exc:
                        starting = None
                        free = sorted(free + gpus, key=pool.index)
                        yield Finished(job, None, node=self._node, note=f"cannot start: {exc}")
                        continue
                    running[r.proc.pid] = r
                    starting = None
                    if r.pidfd is not None:
                        selector.register(r.pidfd, selectors.EVENT_READ, r.proc.pid)
                if pending and not running:  # only refused GPUs are free: wait out the first
                    now = time.monotonic()
                    time.sleep(max(0.0, min(self._avoid.values(), default=now) - now))
                    continue
                for pid in self._wait(selector, running):
                    r = running.pop(pid)
                    finished = self._reap(r)
                    if r.pidfd is not None:
                        selector.unregister(r.pidfd)
                        os.close(r.pidfd)
                    free = sorted(free + r.gpus, key=pool.index)
                    yield finished
        finally:
            if starting is not None and starting.exception(timeout=None) is None:
                r = starting.result()
                running[r.proc.pid] = r
            if running:
                with shielded():
                    self._terminate(list(running.values()))
            for r in running.values():
                if r.pidfd is not None:
                    os.close(r.pidfd)
            selector.close()
            launcher.shutdown()

    def _startable(self, pending: deque[Job], free: list[int], n_running: int) -> list[Job]:
        """First fit in order: each pending job for which a slot and its GPUs are free now."""
        chosen: list[Job] = []
        slots = self.config.slots - n_running
        gpus = len(free)
        for job in list(pending):
            if slots == 0:
                break
            if job.gpus <= gpus:
                pending.remove(job)
                chosen.append(job)
                slots -= 1
                gpus -= job.gpus
        return chosen

    def _start(self, job: Job, gpus: list[int]) -> _Running:
        env = os.environ | thread_env(self.config.slots, os.environ)
        env[GPUS_VAR] = ",".join(map(str, gpus)) if gpus else "none"
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with (
            open(self.log_dir / f"{job.run_id}.out", "ab") as out,
            open(self.log_dir / f"{job.run_id}.err", "ab") as err,
        ):
            err.write(f"# ptb local executor {now}: {GPUS_VAR}={env[GPUS_VAR]}\n".encode())
            err.flush()
            proc = subprocess.Popen(
                job.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                start_new_session=True, preexec_fn=_pdeathsig_preexec(),
            )  # fmt: skip
        started = time.monotonic()
        pidfd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            pidfd = os.pidfd_open(proc.pid)
        return _Running(job, proc, gpus, started, pidfd, started + job.time_limit_s)

    def _wait(self, selector: selectors.BaseSelector, running: dict[int, _Running]) -> list[int]:
        """Block until some job has exited (or a time limit needs acting on); return the pids of
        those that exited."""
        while running:
            now = time.monotonic()
            wake = [self._enforce_limit(r, now) for r in running.values()]
            timeout = max(0.0, min(wake)) if wake else None
            if any(r.pidfd is None for r in running.values()):
                timeout = POLL_S if timeout is None else min(timeout, POLL_S)
            if selector.get_map():
                selector.select(timeout)
            elif timeout:
                time.sleep(timeout)
            done = [pid for pid, r in running.items() if _exited(r.proc)]
            if done:
                return done
        return []

    def _enforce_limit(self, r: _Running, now: float) -> float:
        """SIGTERM a job past its time limit, SIGKILL it a grace later; seconds until the next
        thing to do for it."""
        if r.term_at is None:
            if now < r.deadline:
                return r.deadline - now
            _signal_group(r.proc.pid, signal.SIGTERM)
            r.term_at = now
            r.extra["timed_out"] = True
        kill_at = r.term_at + self.grace_s
        if now < kill_at:
            return kill_at - now
        _signal_group(r.proc.pid, signal.SIGKILL)
        return POLL_S

    def _reap(self, r: _Running) -> Finished:
        # The leader is a zombie until reaped, so its group id cannot have been reused yet.
        _signal_group(r.proc.pid, signal.SIGKILL)
        code = r.proc.wait()
        ended = time.monotonic()
        notes = []
        if r.extra.get("timed_out"):
            notes.append(f"time limit of {r.job.time_limit_s} s exceeded")
        if code < 0:
            notes.append(f"killed by {signal.Signals(-code).name}")
            code = 128 - code
        return Finished(
            r.job, code, engine_id=str(r.proc.pid), node=self._node,
            note="; ".join(notes) or None,
            extra={"gpus": r.gpus, "wall_s": round(ended - r.started, 3), **r.extra},
        )  # fmt: skip

    def _terminate(self, running: list[_Running]) -> None:
        """SIGTERM every job's group, SIGKILL what is left after the grace, reap them all."""
        for r in running:
            _signal_group(r.proc.pid, signal.SIGTERM)
        end = time.monotonic() + self.grace_s
        while time.monotonic() < end and not all(_exited(r.proc) for r in running):
            time.sleep(POLL_S)
        for r in running:
            _signal_group(r.proc.pid, signal.SIGKILL)
            r.proc.wait()
