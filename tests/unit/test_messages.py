"""What the user reads when input is wrong: plain words, "did you mean", refusals before anything
is made; the network probe; and retrying a sweep's failed runs only when asked."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from posttrainbench import offline
from posttrainbench.catalog import BENCHMARKS
from posttrainbench.config import Settings
from posttrainbench.errors import ConfigError, NoNetworkError, UnknownNameError
from posttrainbench.plain_errors import plain
from posttrainbench.records import ErrorInfo
from posttrainbench.results.store import load_run, save_run
from posttrainbench.sandbox import gpu
from posttrainbench.scale.driver import materialize, run_sweep
from posttrainbench.scale.executors import EXECUTORS
from posttrainbench.scale.executors.base import Executor, Finished, Job
from posttrainbench.scale.executors.local import LocalExecutor
from posttrainbench.scale.sweep import SweepSpec, bare_number, load_sweep_file
from tests.unit.test_gpu import FakeRunner


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_model: str | None = None


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    agents: list[Inner] = []
    seeds: list[int] = [0]


def _error(data: dict[str, object]) -> ValidationError:
    with pytest.raises(ValidationError) as err:
        Outer.model_validate(data)
    return err.value


def test_unknown_keys_get_the_closest_known_one_at_their_level() -> None:
    assert plain(_error({"nmae": "x"}), Outer).startswith(
        "unknown key 'nmae'; did you mean 'name'?"
    )
    nested = plain(_error({"name": "x", "agents": [{"agnet_model": "m"}]}), Outer)
    assert nested == "unknown key 'agents.0.agnet_model'; did you mean 'agent_model'?"
    assert plain(_error({"name": "x", "zzz": 1}), Outer) == "unknown key 'zzz'"


def test_pydantic_wording_becomes_plain_words() -> None:
    missing = plain(_error({}), Outer)
    assert missing == "name: missing (required)"
    wrong = plain(_error({"name": "x", "seeds": ["a"]}), Outer)
    assert wrong.startswith("seeds.0: input should be a valid integer") and "(got 'a')" in wrong
    for text in (missing, wrong):
        assert "Value error" not in text and "Extra inputs" not in text and "\n" not in text


def test_sweep_file_errors_are_plain(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nbase_models = ["ptb-tiny"]\nbenchmarks = ["arith"]\n'
                    'budgett = "1m"\n[[agents]]\nagent = "noop"\n')  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_sweep_file(path)
    assert "unknown key 'budgett'; did you mean 'budget'?" in err.value.message
    assert "Extra inputs" not in err.value.message


@pytest.mark.parametrize("value", ["10", "10.5", " 7 "])
def test_bare_numbers_are_not_durations(tmp_path: Path, value: str) -> None:
    assert bare_number(value) and not bare_number("10m") and not bare_number("1h30m")
    path = tmp_path / "s.toml"
    path.write_text(f'name = "s"\nbase_models = ["ptb-tiny"]\nbenchmarks = ["arith"]\n'
                    f'budget = "{value}"\n[[agents]]\nagent = "noop"\n')  # fmt: skip
    with pytest.raises(ConfigError) as err:
        load_sweep_file(path)
    assert "has no unit" in err.value.message and "m" in (err.value.hint or "")


def test_registry_points_at_the_list_command_that_exists() -> None:
    from posttrainbench.sandbox import SANDBOXES

    with pytest.raises(UnknownNameError) as err:
        SANDBOXES.get("dockr")
    assert "`ptb list sandboxes`" in str(err.value) and "sandboxs" not in str(err.value)
    with pytest.raises(UnknownNameError) as err:
        EXECUTORS.get("slurmm")
    assert "ptb list" not in str(err.value)  # no such list command


def test_unpinned_source_label_says_so() -> None:
    labels = [s.label for _, b in BENCHMARKS for s in b.sources]
    assert labels and not any("(sha256 )" in label for label in labels)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_network_probe_fails_fast_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*offline.HUB_ENV, "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    with pytest.raises(NoNetworkError) as err:
        offline.require_network("prefetch cannot reach the hub")
    assert time.monotonic() - started < offline.PROBE_TIMEOUT_S
    assert err.value.message.startswith("no network: prefetch cannot reach the hub (127.0.0.1:")
    assert err.value.exit_code == 1


def test_network_probe_passes_when_something_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in offline.HUB_ENV:
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        offline.require_network("x", f"http://127.0.0.1:{server.getsockname()[1]}/file")


def test_hub_offline_switches_the_client_and_prefetch_switches_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    for name in offline.HUB_ENV:
        monkeypatch.delenv(name, raising=False)
    offline.hub_offline()
    assert hub.is_offline_mode()
    offline.hub_online()
    assert not hub.is_offline_mode()


def test_gpus_this_machine_lacks_are_a_config_error() -> None:
    gpu.require_gpus([])  # nothing asked: nothing run
    with pytest.raises(ConfigError) as err:
        gpu.require_gpus([0, 7], run=FakeRunner())
    assert "this machine has no GPU 7" in err.value.message and "lists 0,1" in (
        err.value.hint or ""
    )
    with pytest.raises(ConfigError) as err:
        gpu.require_gpus([0], "executor gpus", "use none", run=FakeRunner(smi=FileNotFoundError()))
    assert err.value.message.startswith("executor gpus 0: no GPU can be used here")
    assert (err.value.hint or "").endswith("or use none")
    gpu.require_gpus([1], run=FakeRunner())


def test_local_sweep_asking_for_gpus_it_cannot_have_is_refused() -> None:
    from posttrainbench.scale.executors.base import ExecutorConfig

    with pytest.raises(ConfigError, match="gpus_per_run = 1 but its pool gpus lists 0"):
        LocalExecutor.check_config(ExecutorConfig(gpus_per_run=1))
    LocalExecutor.check_config(ExecutorConfig())


class _Finishing(Executor):
    """Runs no harness: records each job it got, and marks the run done."""

    name: ClassVar[str] = "test-finishing"
    got: ClassVar[list[str]] = []

    def run(self, jobs: Sequence[Job]) -> Iterator[Finished]:
        for job in jobs:
            self.got.append(job.run_id)
            record = load_run(job.run_dir)
            for stage in record.stages.values():
                stage.state, stage.error = "done", None
            save_run(job.run_dir, record)
            yield Finished(job, 0)


if _Finishing.name not in EXECUTORS:
    EXECUTORS.register(_Finishing.name, _Finishing)


def test_failed_runs_are_retried_only_when_asked(settings: Settings) -> None:
    spec = SweepSpec.model_validate({
        "name": "retry", "agents": [{"agent": "noop"}], "base_models": ["ptb-tiny"],
        "benchmarks": ["arith"], "seeds": [0, 1], "budget": "1m", "sandbox": "host",
        "executor": {"kind": _Finishing.name},
    })  # fmt: skip
    sweep_dir, runs = materialize(spec, settings)
    failed = sweep_dir / runs[0].run_id
    record = load_run(failed)
    record.stages["prepare"].state = "failed"
    record.stages["prepare"].error = ErrorInfo(type="ConfigError", message="no key")
    save_run(failed, record)
    _Finishing.got.clear()
    states = run_sweep(spec, settings)
    assert _Finishing.got == [runs[1].run_id] and states[runs[0].run_id][0] == "failed"
    _Finishing.got.clear()
    states = run_sweep(spec, settings, retry_failed=True)
    assert _Finishing.got == [runs[0].run_id]
    assert all(state == "done" for state, _ in states.values())


def test_the_evaluation_subprocess_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from posttrainbench.evaluate import launch

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    env = launch.evaluation_env("arith", launch.EvalOptions())
    assert env["HF_HUB_OFFLINE"] == env["TRANSFORMERS_OFFLINE"] == "1"
