"""Sweep files, their deterministic expansion, and how the driver reads a run's state."""

from __future__ import annotations

from pathlib import Path

import pytest

from posttrainbench.config import Settings
from posttrainbench.errors import ConfigError
from posttrainbench.records import ErrorInfo, GpuCheck, GpuPreflight, RunRecord
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.lock import RunLock
from posttrainbench.results.store import load_run, save_run
from posttrainbench.scale.driver import materialize, read_tries, refused_gpus, run_state
from posttrainbench.scale.sweep import load_sweep_file

TOML = """
name = "grid"
base_models = ["ptb-tiny"]
benchmarks = ["arith"]
seeds = [0, 1]
budget = "90s"
sandbox = "host"
continue_min = "2m"

[[agents]]
agent = "noop"

[[agents]]
agent = "command"
agent_cmd = "true"
continue_prompts = 2

[executor]
kind = "local"
slots = 2
retries = 1
"""


def test_toml_and_yaml_give_the_same_sweep(tmp_path: Path) -> None:
    toml = tmp_path / "grid.toml"
    toml.write_text(TOML)
    yaml_file = tmp_path / "grid.yaml"
    yaml_file.write_text(
        "name: grid\nbase_models: [ptb-tiny]\nbenchmarks: [arith]\nseeds: [0, 1]\n"
        "budget: 90s\nsandbox: host\ncontinue_min: 2m\nagents:\n  - agent: noop\n"
        "  - {agent: command, agent_cmd: 'true', continue_prompts: 2}\n"
        "executor: {kind: local, slots: 2, retries: 1}\n"
    )
    a, b = load_sweep_file(toml), load_sweep_file(yaml_file)
    assert a == b
    assert (a.budget_s, a.continue_min_s, a.executor.slots) == (90, 120, 2)


def test_expansion_is_stable_and_names_each_configuration(tmp_path: Path) -> None:
    (tmp_path / "g.toml").write_text(TOML)
    first = load_sweep_file(tmp_path / "g.toml").expand()
    again = load_sweep_file(tmp_path / "g.toml").expand()
    ids = [r.run_id for r in first]
    assert ids == [r.run_id for r in again]
    assert len(set(ids)) == 4
    assert ids[0].startswith("noop-ptb-tiny-arith-s0-")
    changed = load_sweep_file(tmp_path / "g.toml").model_copy(update={"budget_s": 91}).expand()
    assert not set(ids) & {r.run_id for r in changed}  # another budget is another configuration
    command = [r for r in first if r.agent == "command"]
    assert all(r.continue_prompts == 2 and r.continue_min_s == 120 for r in command)


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        (TOML.replace('budget = "90s"', 'budget = "soon"'), ".toml", "budget"),
        (TOML.replace("slots = 2", "slots = 0"), ".toml", "executor.slots"),
        (TOML + "\nunknown = 1\n", ".toml", "unknown"),
        ("name = [", ".toml", "not valid toml"),
        ("name: [", ".yaml", "not valid YAML"),
        (TOML, ".json", "unknown sweep file type"),
    ],
)
def test_bad_sweep_files_are_one_line_errors(
    tmp_path: Path, text: str, suffix: str, message: str
) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_sweep_file(path)
    assert message in err.value.message and "\n" not in err.value.message


def test_run_state_reads_the_record_and_the_lock(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "g.toml").write_text(TOML)
    sweep_dir, runs = materialize(load_sweep_file(tmp_path / "g.toml"), settings)
    assert sorted(p.name for p in sweep_dir.iterdir() if p.is_dir()) == sorted(
        r.run_id for r in runs
    )
    run_dir = sweep_dir / runs[0].run_id
    assert run_state(run_dir) == ("pending", None)
    with RunLock(RunPaths(run_dir).lock):
        assert run_state(run_dir)[0] == "running"
    record = RunRecord.model_validate_json(RunPaths(run_dir).run_json.read_text())
    record.stages["prepare"].state = "failed"
    record.stages["prepare"].error = ErrorInfo(type="InfrastructureError", message="GPU 0 busy",
                                               retryable=True)  # fmt: skip
    save_run(run_dir, record)
    assert run_state(run_dir) == ("retryable", "prepare: GPU 0 busy")
    record.stages["prepare"].error = ErrorInfo(type="ConfigError", message="bad")
    save_run(run_dir, record)
    assert run_state(run_dir)[0] == "failed"
    record.stages["prepare"].state, record.stages["prepare"].error = "done", None
    save_run(run_dir, record)
    assert run_state(run_dir) == ("interrupted", "stopped after prepare")
    assert run_state(run_dir, until="prepare") == ("done", None)  # `sweep run --until prepare`
    assert run_state(run_dir, until="solve") == ("interrupted", "stopped after prepare")
    record.stages["solve"].state = "running"  # a harness killed mid-stage
    save_run(run_dir, record)
    assert run_state(run_dir) == ("interrupted", "stopped mid-run")
    # A second materialize keeps what exists and writes the same plan.
    again_dir, _ = materialize(load_sweep_file(tmp_path / "g.toml"), settings)
    assert again_dir == sweep_dir and run_state(run_dir)[0] == "interrupted"
    assert read_tries(sweep_dir) == []


def test_the_gpus_a_preflight_refused_are_read_from_the_record(
    tmp_path: Path, settings: Settings
) -> None:
    (tmp_path / "g.toml").write_text(TOML)
    sweep_dir, runs = materialize(load_sweep_file(tmp_path / "g.toml"), settings)
    run_dir = sweep_dir / runs[0].run_id
    assert refused_gpus(run_dir) == []
    record = load_run(run_dir)
    checks = [
        GpuCheck(index=2, present=True, passed=True),
        GpuCheck(index=3, present=True, passed=False, reason="pid 4242 holds 30 GiB"),
    ]
    record.gpu_preflight = GpuPreflight(
        requested=[2, 3], accepted_classes=["H100"], max_used_mib=1024, max_util_pct=10,
        probed=True, passed=False, checks=checks,
    )  # fmt: skip
    save_run(run_dir, record)
    assert refused_gpus(run_dir) == []  # an old preflight of a run that failed elsewhere
    record.stages["prepare"].state = "failed"
    record.stages["prepare"].error = ErrorInfo(
        type="GpuPreflightError", message="GPU 3 is busy", retryable=True
    )
    save_run(run_dir, record)
    assert refused_gpus(run_dir) == [3]


def test_status_shows_the_sweeps_suite_and_each_runs_where_they_differ(
    tmp_path: Path, settings: Settings
) -> None:
    import json

    from rich.console import Console

    from posttrainbench.scale.driver import load_plan, plan_path
    from posttrainbench.scale.status import render, sweep_status

    def shown(status: object) -> str:
        console = Console(record=True, width=250)
        console.print(render(status))  # type: ignore[arg-type]
        return console.export_text()

    (tmp_path / "g.toml").write_text(TOML)
    sweep_dir, runs = materialize(load_sweep_file(tmp_path / "g.toml"), settings)
    status = sweep_status(sweep_dir)
    assert status.suite == "ptb-v1.2" and {r.suite for r in status.runs} == {"ptb-v1.2"}
    text = shown(status)
    assert "sweep grid, suite ptb-v1.2: 4 runs" in text and "┃ suite" not in text
    assert json.loads(status.model_dump_json())["suite"] == "ptb-v1.2"  # `--json`

    record = load_run(sweep_dir / runs[0].run_id)
    record.spec = record.spec.model_copy(update={"suite": "ptb-v1.0"})
    save_run(sweep_dir / runs[0].run_id, record)
    status = sweep_status(sweep_dir)
    assert status.other_suites and status.runs[0].suite == "ptb-v1.0"
    lines = shown(status).splitlines()
    assert any("┃ seed ┃ suite" in line for line in lines)  # the suite of each run
    rows = {line.split()[1]: line for line in lines if line.startswith("│")}
    assert "│ ptb-v1.0 │" in rows[runs[0].run_id] and "│ ptb-v1.2 │" in rows[runs[1].run_id]

    # a sweep.json from before suites: its runs followed ptb-v1.0, and so does its plan
    stored = json.loads(plan_path(sweep_dir).read_text())
    del stored["spec"]["suite"]
    plan_path(sweep_dir).write_text(json.dumps(stored | {"schema_version": 3}))
    assert load_plan(sweep_dir).spec.suite == "ptb-v1.0"
