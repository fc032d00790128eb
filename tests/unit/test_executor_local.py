"""The local executor against real subprocesses: slots, GPU pinning, order of reports, limits."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from posttrainbench.errors import ConfigError
from posttrainbench.scale.executors import EXECUTORS, ExecutorConfig, Finished, Job, get_executor
from posttrainbench.scale.executors.local import LocalExecutor


def _executor(tmp_path: Path, **config: Any) -> LocalExecutor:
    executor = get_executor(ExecutorConfig(kind="local", **config), tmp_path / "sweep")
    assert isinstance(executor, LocalExecutor)
    return executor


def _job(tmp_path: Path, run_id: str, script: str, gpus: int = 0, limit: int = 600) -> Job:
    """A bash job that records its start time and PTB_GPUS, runs `script`, records its end."""
    rec = tmp_path / "rec"
    rec.mkdir(exist_ok=True)
    out = rec / run_id
    body = (
        f'echo "$EPOCHREALTIME $$ ${{PTB_GPUS-unset}}" > {out}; {script}; s=$?; '
        f"echo $EPOCHREALTIME >> {out}; exit $s"
    )
    return Job(run_id, tmp_path / run_id, gpus, limit, command=("bash", "-c", body))


def _record(tmp_path: Path, run_id: str) -> tuple[float, float, str]:
    first, end = (tmp_path / "rec" / run_id).read_text().splitlines()
    start, _pid, gpus = first.split()
    return float(start), float(end), gpus


def _pid(tmp_path: Path, run_id: str) -> int:
    return int((tmp_path / "rec" / run_id).read_text().split()[1])


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_for(path: Path, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)


def test_registered() -> None:
    assert EXECUTORS.get("local") is LocalExecutor


def test_a_job_resumes_its_run_and_stops_where_the_sweep_says() -> None:
    job = Job("r1", Path("/results/s/r1"), 1, 60)
    assert job.argv == [sys.executable, "-P", "-m", "posttrainbench", "run", "--resume",
                        "/results/s/r1"]  # fmt: skip
    assert Job("r1", Path("/r"), 1, 60, until="collect").argv[-2:] == ["--until", "collect"]


def test_slot_limit_is_respected_and_used(tmp_path: Path) -> None:
    jobs = [_job(tmp_path, f"r{i}", "sleep 0.3") for i in range(6)]
    done = list(_executor(tmp_path, slots=2).run(jobs))
    assert sorted(f.job.run_id for f in done) == [j.run_id for j in jobs]
    assert all(f.returncode == 0 for f in done)
    spans = [_record(tmp_path, j.run_id)[:2] for j in jobs]
    # At every job's start, count how many jobs are running.
    peak = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert peak == 2
    assert all(gpus == "none" for *_, gpus in (_record(tmp_path, j.run_id) for j in jobs))


def test_gpus_are_pinned_without_overlap(tmp_path: Path) -> None:
    needs = [1, 2, 1, 1, 3, 2, 1, 1]
    jobs = [_job(tmp_path, f"g{i}", "sleep 0.2", gpus=n) for i, n in enumerate(needs)]
    executor = _executor(tmp_path, slots=4, gpus=[4, 5, 6], gpus_per_run=1)
    done = {f.job.run_id: f for f in executor.run(jobs)}
    assert all(f.returncode == 0 for f in done.values())
    recs = {j.run_id: _record(tmp_path, j.run_id) for j in jobs}
    sets = {}
    for job in jobs:
        got = [int(g) for g in recs[job.run_id][2].split(",")]
        assert len(got) == job.gpus == len(set(got))
        assert set(got) <= {4, 5, 6}
        assert done[job.run_id].extra["gpus"] == got
        sets[job.run_id] = set(got)
    for a, b in itertools.combinations(jobs, 2):
        (sa, ea, _), (sb, eb, _) = recs[a.run_id], recs[b.run_id]
        if sa < eb and sb < ea:  # ran at the same time
            assert not sets[a.run_id] & sets[b.run_id], (a.run_id, b.run_id)


def test_a_gpu_the_preflight_refused_gets_no_more_jobs_while_others_can_take_them(
    tmp_path: Path,
) -> None:
    jobs = [_job(tmp_path, f"j{i}", "sleep 0.1", gpus=1) for i in range(5)]
    executor = _executor(tmp_path, slots=1, gpus=[0, 1], options={"refused_cooldown_s": 600})
    placed = []
    for f in executor.run(jobs):
        placed.append(f.extra["gpus"])
        if f.job.run_id == "j0":  # as the driver does when run.json says GPU 0 was refused
            executor.avoid_gpus([0, 7], "GPU 0: pid 4242 holds 30 GiB")
    assert placed == [[0], [1], [1], [1], [1]]


def test_when_only_refused_gpus_are_left_the_pool_waits_out_the_cooldown(tmp_path: Path) -> None:
    executor = _executor(tmp_path, slots=1, gpus=[0], options={"refused_cooldown_s": 0.5})
    start = time.time()  # before the refusal, whose cooldown starts inside avoid_gpus
    executor.avoid_gpus([0], "busy")
    done = list(executor.run([_job(tmp_path, "late", "true", gpus=1)]))
    assert [f.returncode for f in done] == [0]
    began, _, gpus = _record(tmp_path, "late")
    assert gpus == "0" and began - start >= 0.45


def test_jobs_are_reported_as_they_finish(tmp_path: Path) -> None:
    jobs = [
        _job(tmp_path, "slow", "sleep 1.2"),
        _job(tmp_path, "fast", "sleep 0.1"),
        _job(tmp_path, "mid", "sleep 0.6"),
    ]
    seen: list[tuple[str, float]] = []
    for f in _executor(tmp_path, slots=3).run(jobs):
        seen.append((f.job.run_id, time.time()))
    assert [r for r, _ in seen] == ["fast", "mid", "slow"]
    for run_id, reported in seen:
        _, end, _ = _record(tmp_path, run_id)
        assert 0 <= reported - end < 0.5, run_id  # the jobs end 0.5 s apart


def test_impossible_gpu_request_ends_at_once(tmp_path: Path) -> None:
    jobs = [_job(tmp_path, "big", "true", gpus=3), _job(tmp_path, "ok", "sleep 3", gpus=1)]
    start = time.monotonic()
    it = _executor(tmp_path, slots=2, gpus=[0, 1]).run(jobs)
    first = next(it)
    assert time.monotonic() - start < 2  # not after the 3 s job
    assert first.job.run_id == "big" and first.returncode is None
    assert first.note is not None and "needs 3 GPUs" in first.note and "has 2" in first.note
    assert not (tmp_path / "rec" / "big").exists()
    rest = list(it)
    assert [(f.job.run_id, f.returncode) for f in rest] == [("ok", 0)]


def test_returncodes_pid_and_logs(tmp_path: Path) -> None:
    codes = {"ok": "true", "failed": "exit 1", "usage": "exit 2", "term": "exit 143"}
    jobs = [_job(tmp_path, run_id, script) for run_id, script in codes.items()]
    jobs.append(Job("killed", tmp_path, 0, 600, command=("bash", "-c", "echo hi; kill -9 $$")))
    jobs.append(Job("missing", tmp_path, 0, 600, command=("/nonexistent/ptb",)))
    done = {f.job.run_id: f for f in _executor(tmp_path, slots=3).run(jobs)}
    got = {run_id: f.returncode for run_id, f in done.items()}
    assert got == {"ok": 0, "failed": 1, "usage": 2, "term": 143, "killed": 137, "missing": None}
    assert done["killed"].note == "killed by SIGKILL"
    assert done["missing"].note is not None and "cannot start" in done["missing"].note
    assert done["ok"].engine_id == str(_pid(tmp_path, "ok"))
    assert done["ok"].node
    logs = tmp_path / "sweep" / ".jobs" / "local"
    assert (logs / "killed.out").read_text() == "hi\n"
    assert "PTB_GPUS=none" in (logs / "killed.err").read_text()
    list(_executor(tmp_path).run([jobs[4]]))  # a rerun appends
    assert (logs / "killed.out").read_text() == "hi\nhi\n"


def test_caller_environment_is_passed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TEST_MARK", "seen")
    monkeypatch.setenv("PTB_GPUS", "7")  # the executor's assignment wins
    job = _job(tmp_path, "env", 'test "$PTB_TEST_MARK" = seen')
    [f] = _executor(tmp_path).run([job])
    assert f.returncode == 0
    assert _record(tmp_path, "env")[2] == "none"


def test_parallel_slots_share_the_cpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    seen = tmp_path / "threads"
    script = f'echo "${{OMP_NUM_THREADS-unset}} ${{MKL_NUM_THREADS-unset}}" >> {seen}'
    share = str(max(1, len(os.sched_getaffinity(0)) // 2))
    list(_executor(tmp_path, slots=2).run([_job(tmp_path, "two", script)]))
    assert seen.read_text() == f"{share} {share}\n"
    list(_executor(tmp_path, slots=1).run([_job(tmp_path, "one", script)]))
    assert seen.read_text().splitlines()[1] == "unset unset"  # one slot: torch's own default
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the caller's choice is kept
    list(_executor(tmp_path, slots=2).run([_job(tmp_path, "mine", script)]))
    assert seen.read_text().splitlines()[2] == "3 unset"


def test_time_limit_terminates_then_kills(tmp_path: Path) -> None:
    polite = _job(tmp_path, "polite", "sleep 30", limit=1)
    stubborn = Job(
        "stubborn", tmp_path, 0, 1, command=("bash", "-c", "trap '' TERM; sleep 30 & wait; wait")
    )
    start = time.monotonic()
    done = {f.job.run_id: f for f in _executor(tmp_path, slots=2, options={"grace_s": 1}).run(
        [polite, stubborn]
    )}  # fmt: skip
    assert time.monotonic() - start < 5
    # bash waits for its `sleep` child, which got SIGTERM with the group.
    assert done["polite"].returncode == 143
    assert done["stubborn"].returncode == 137
    for f in done.values():
        assert f.extra["timed_out"] is True
        assert f.note is not None and "time limit of 1 s exceeded" in f.note


def test_leftovers_of_a_finished_job_are_killed(tmp_path: Path) -> None:
    job = _job(tmp_path, "leaky", f"sleep 60 & echo $! > {tmp_path}/child")
    [f] = _executor(tmp_path).run([job])
    assert f.returncode == 0
    pid = int((tmp_path / "child").read_text())
    end = time.monotonic() + 3
    while not _gone(pid):
        assert time.monotonic() < end
        time.sleep(0.02)


def test_closing_early_terminates_running_jobs(tmp_path: Path) -> None:
    jobs = [
        _job(tmp_path, "quick", "true"),
        _job(tmp_path, "long", "sleep 60"),
        _job(tmp_path, "deaf", "trap '' TERM; sleep 60"),
    ]
    it = _executor(tmp_path, slots=3, options={"grace_s": 1}).run(jobs)
    assert isinstance(it, Generator)
    first = next(it)
    assert first.job.run_id == "quick"
    _wait_for(tmp_path / "rec" / "long")
    _wait_for(tmp_path / "rec" / "deaf")
    pids = [_pid(tmp_path, "long"), _pid(tmp_path, "deaf")]
    start = time.monotonic()
    it.close()
    assert time.monotonic() - start < 4
    assert all(_gone(pid) for pid in pids)


def test_interrupt_terminates_running_jobs_and_propagates(tmp_path: Path) -> None:
    # Python's own SIGINT handler, whatever an earlier test of the session installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    jobs = [_job(tmp_path, "a", "sleep 60"), _job(tmp_path, "b", "sleep 60")]
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        try:
            list(_executor(tmp_path, slots=2, options={"grace_s": 2}).run(jobs))
        finally:
            signal.signal(signal.SIGINT, previous)
    assert all(_gone(_pid(tmp_path, r)) for r in "ab")


def test_jobs_survive_the_end_of_the_thread_that_started_them(tmp_path: Path) -> None:
    """PDEATHSIG follows the forking thread: a consumer thread that ends must not kill jobs."""
    jobs = [_job(tmp_path, "first", "true"), _job(tmp_path, "second", "sleep 1")]
    it: Iterator[Finished] = _executor(tmp_path, slots=2).run(jobs)
    got: list[Finished] = []
    consumer = threading.Thread(target=lambda: got.append(next(it)))
    consumer.start()
    consumer.join()
    assert got[0].job.run_id == "first"
    [rest] = list(it)
    assert rest.job.run_id == "second" and rest.returncode == 0


def test_duplicate_gpus_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        _executor(tmp_path, gpus=[0, 0])
