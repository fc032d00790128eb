"""The Ray executor's pure parts: task options, the fit check, the notes of lost tasks, the GPU
list, and the task's command runner (a real subprocess, no Ray scheduling)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from posttrainbench.errors import ConfigError, MissingDependencyError
from posttrainbench.scale.executors import ExecutorConfig, Job, get_executor
from posttrainbench.scale.executors import ray as rayex

GIB = 1024**3


def job(gpus: int = 0, command: tuple[str, ...] | None = ("true",)) -> Job:
    return Job("r1", Path("/results/r1"), gpus, 3600, command)


def node(cpu: float, gpu: float = 0, mem_gib: float = 64, alive: bool = True) -> dict:
    res = {"CPU": cpu, "memory": mem_gib * GIB} | ({"GPU": gpu} if gpu else {})
    return {"Alive": alive, "Resources": res}


def test_task_options() -> None:
    config = ExecutorConfig(kind="ray", cpus_per_run=6, mem_gb_per_run=16)
    opts = rayex.task_options(job(gpus=2), config, rayex.parse_options({}))
    assert opts == {"num_cpus": 6, "num_gpus": 2, "max_retries": 0, "name": "ptb-r1"}
    with_mem = rayex.task_options(job(), config, rayex.parse_options({"reserve_memory": True}))
    assert with_mem["memory"] == 16 * GIB


def test_options_are_checked() -> None:
    assert rayex.parse_options({"address": "auto"}).address == "auto"
    with pytest.raises(ConfigError, match="adress") as err:
        rayex.parse_options({"adress": "auto"})
    assert "address" in (err.value.hint or "")
    with pytest.raises(ConfigError, match="num_cpus"):
        get_executor(ExecutorConfig(kind="ray", options={"num_cpus": 0}), Path("/tmp"))


def test_fit_on_one_node() -> None:
    opts = {"num_cpus": 4, "num_gpus": 2}
    assert rayex.unfit_reason(opts, [node(8), node(8, gpu=2)]) is None
    # Enough GPUs in the cluster, but not on one node.
    assert "at most 1 GPU" in (rayex.unfit_reason(opts, [node(8, 1), node(8, 1)]) or "")
    # A dead node does not count.
    assert rayex.unfit_reason(opts, [node(8, 2, alive=False), node(8)]) is not None


def test_unfit_note_names_what_is_short() -> None:
    note = rayex.unfit_reason({"num_cpus": 1, "num_gpus": 8, "memory": 32 * GIB}, [node(2)])
    assert note == (
        "needs 8 GPU, 1 CPU, 32 GiB memory on one node; no node of the Ray cluster has that "
        "(at most 0 GPU)"
    )
    assert "no alive node" in (rayex.unfit_reason({"num_cpus": 1}, []) or "")
    assert rayex.unfit_reason({"num_cpus": 0, "num_gpus": 0}, [node(1)]) is None


def test_gpu_list() -> None:
    assert rayex.gpu_list([]) == "none"
    assert rayex.gpu_list([2, 3]) == "2,3"
    assert rayex.gpu_list(["0", "5"]) == "0,5"


def test_lost_notes() -> None:
    from ray import exceptions

    crashed = rayex.lost_note(exceptions.WorkerCrashedError())
    assert crashed.startswith("the Ray worker died")
    assert rayex.lost_note(exceptions.TaskCancelledError()).startswith("cancelled")
    assert rayex.lost_note(exceptions.NodeDiedError("node 10.0.0.3 died")).startswith(
        "lost with its node"
    )
    failed = exceptions.RayTaskError("run_task", "tb", FileNotFoundError("no such file: x"))
    assert "FileNotFoundError: no such file: x" in rayex.lost_note(failed)


def test_task_body_runs_the_command(tmp_path: Path) -> None:
    out, err = tmp_path / "logs" / "r.out", tmp_path / "logs" / "r.err"
    argv = ["sh", "-c", 'echo "gpus=$PTB_GPUS x=$X"; echo oops >&2; exit 3']
    env = {"X": "1", "PATH": "/usr/bin:/bin", "PTB_GPUS": "none"}
    result = rayex.run_command(argv, env, "/", str(out), str(err), 60, 5)
    assert result.returncode == 3 and result.note is None
    assert out.read_text() == "gpus=none x=1\n" and err.read_text() == "oops\n"
    assert result.started_at <= result.ended_at


def test_task_body_enforces_the_time_limit(tmp_path: Path) -> None:
    out, err = str(tmp_path / "r.out"), str(tmp_path / "r.err")
    script = 'trap "echo stopping; exit 143" TERM; sleep 30 & wait'
    result = rayex.run_command(["sh", "-c", script], {}, "/", out, err, 0.5, 5)
    assert result.returncode == 143 and result.note == "time limit of 0.5s reached: stopped"
    assert Path(out).read_text() == "stopping\n"
    # One that ignores SIGTERM is killed after the grace.
    result = rayex.run_command(["sh", "-c", 'trap "" TERM; sleep 30'], {}, "/", out, err, 0.2, 0.3)
    assert result.returncode == -9
    assert result.ended_at - result.started_at < 5


def test_check_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    executor = get_executor(ExecutorConfig(kind="ray"), Path("/tmp"))
    with pytest.raises(MissingDependencyError) as err:
        executor.check()
    assert err.value.hint == f'pip install "ray[default]=={rayex.RAY_VERSION}"'
