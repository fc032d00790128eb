"""The Ray executor on a real Ray: a local one it starts (and stops) for the sweep, and an existing
cluster (`ray start --head`) that it connects to, cancels its runs on when interrupted, and leaves
running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import cast

import pytest
import ray

from posttrainbench.scale.executors import ExecutorConfig, Finished, Job, get_executor
from tests.waiting import wait_until

RAY_CLI = str(Path(sys.executable).parent / "ray")
# On two busy cores Ray's cancel reached a running task after 60 s (the parallel suite).
pytestmark = pytest.mark.alone


def sh(run_id: str, script: str, sweep: Path, gpus: int = 0, limit: int = 60) -> Job:
    return Job(run_id, sweep / run_id, gpus, limit, ("sh", "-c", script))


def test_sweep_on_a_local_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TEST_MARK", "from-the-driver")
    options = {"num_cpus": 2, "stop_grace_s": 5}
    executor = get_executor(ExecutorConfig(kind="ray", cpus_per_run=1, options=options), tmp_path)
    executor.check()
    jobs = [sh(f"ok{i}", 'echo "$PTB_GPUS $PTB_TEST_MARK"', tmp_path) for i in range(3)]
    jobs += [
        sh("fails", "echo broken >&2; exit 1", tmp_path),
        sh("eight-gpus", "true", tmp_path, gpus=8),
        sh("too-long", 'trap "exit 143" TERM; sleep 60 & wait', tmp_path, limit=1),
        sh("worker-dies", "kill -9 $PPID; sleep 1", tmp_path),
        # The real harness, through the default argv: no run.json there, a usage error.
        Job("harness", tmp_path / "no-such-run", 0, 60),
    ]
    start = time.monotonic()
    done = {f.job.run_id: f for f in executor.run(jobs)}
    assert time.monotonic() - start < 45
    assert sorted(done) == sorted(j.run_id for j in jobs)
    logs = tmp_path / ".jobs" / "ray"
    for i in range(3):
        ok = done[f"ok{i}"]
        assert (ok.returncode, ok.note, ok.node) == (0, None, os.uname().nodename)
        assert ok.engine_id and re.fullmatch(r"[0-9a-f]+", ok.engine_id)
        assert ok.extra["started_at"] <= ok.extra["ended_at"]
        assert (logs / f"ok{i}.out").read_text() == "none from-the-driver\n"
    assert done["fails"].returncode == 1
    assert (logs / "fails.err").read_text() == "broken\n"
    big = done["eight-gpus"]
    assert big.returncode is None and big.engine_id is None
    assert big.note and "needs 8 GPU" in big.note and "at most 0 GPU" in big.note
    assert done["too-long"].returncode == 143
    assert done["too-long"].note == "time limit of 1s reached: stopped"
    assert done["worker-dies"].returncode is None
    assert "worker died" in (done["worker-dies"].note or "")
    assert done["harness"].returncode == 2
    assert "not a run directory" in (logs / "harness.err").read_text()
    assert not ray.is_initialized()  # the local Ray it started is gone


@pytest.fixture
def ray_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Ray head started the way a cluster admin would; its address."""
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # what `ray start` enables by default
    # as a user's shell would have it before ptb starts: Ray's C++ config read the mode when
    # ray was imported, and a client left on that reading sends no token (this test, run first)
    from ray._raylet import Config

    Config.initialize("")
    log = tmp_path / "head.log"
    argv = [RAY_CLI, "start", "--head", "--block", "--port=0", "--num-cpus=2"]
    argv += ["--include-dashboard=false", "--disable-usage-stats"]
    with open(log, "w") as out:
        head = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
    m = None
    try:
        deadline = time.monotonic() + 60
        while not (m := re.search(r"ray start --address='([^']+)'", log.read_text())):
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield m[1]
        assert head.poll() is None, "the executor stopped a cluster it did not start"
    finally:
        head.terminate()  # `ray start --block` stops its node's processes on SIGTERM
        try:
            head.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        # Unlike `ray stop`, a stopped `ray start --block` leaves its address as the machine's
        # current cluster, where a later `ray.init()` would wait for it forever.
        from ray._common.utils import get_ray_address_file

        current = Path(get_ray_address_file(None))
        if m and current.exists() and current.read_text().strip() == m[1]:
            current.unlink()


def test_interrupt_on_an_existing_cluster(tmp_path: Path, ray_head: str) -> None:
    options = {"address": ray_head, "stop_grace_s": 5}
    executor = get_executor(ExecutorConfig(kind="ray", cpus_per_run=1, options=options), tmp_path)
    logs = tmp_path / ".jobs" / "ray"
    jobs = [
        sh("quick", "true", tmp_path),
        sh("running", 'trap "echo stopping; exit 143" TERM; echo ready; sleep 60 & wait', tmp_path),
        sh("queued-1", "sleep 60", tmp_path),
        sh("queued-2", "sleep 60", tmp_path),
    ]
    runs = cast(Generator[Finished, None, None], executor.run(jobs))
    first = next(runs)
    assert (first.job.run_id, first.returncode) == ("quick", 0)
    deadline = time.monotonic() + 30
    while "ready" not in _read(logs / "running.out"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    start = time.monotonic()
    runs.close()  # what a Ctrl-C in the sweep driver does to the generator
    assert time.monotonic() - start < 40  # stop_grace_s 5 + Ray's cancel, on 2 loaded cores
    # close() waits stop_grace_s + 10 s for the cancelled tasks, then leaves them to the cluster:
    # on 2 loaded cores Ray's cancel reached the running task only after that (the CI rehearsal)
    wait_until(lambda: "stopping" in _read(logs / "running.out"), "the task's SIGTERM trap", 60)
    assert _read(logs / "running.out") == "ready\nstopping\n"
    assert not ray.is_initialized()
    status = subprocess.run([RAY_CLI, "status", "--address", ray_head], capture_output=True)
    assert status.returncode == 0, status.stderr


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
