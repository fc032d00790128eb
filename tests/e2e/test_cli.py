"""The real CLI on run directories: `ptb show` of a stored record, and the exit codes of a harness
stopped by SIGTERM or SIGINT in the middle of a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from posttrainbench.records import (
    AgentAttempt,
    AgentOutcome,
    BaselineRef,
    CollectedFile,
    CollectOutcome,
    ErrorInfo,
    EvalMetrics,
    HarnessInfo,
    LogStats,
    Outcome,
    ProcessInfo,
    RunRecord,
    RunSpec,
    SkippedFile,
    StageStatus,
    Verdict,
)
from posttrainbench.results.store import save_run
from tests.conftest import PtbRunner

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def _stored_record() -> RunRecord:
    spec = RunSpec(
        run_id="20250301T120000-command-ptb-tiny-arith-abc123",
        agent="command",
        agent_cmd="python my_agent.py",
        base_model="ptb-tiny",
        benchmark="arith",
        budget_s=3600,
        seed=7,
        resume_policy="deadline",
        pass_env=["WANDB_MODE"],
        created_at=T0,
    )
    first = AgentAttempt(
        pid=4242,
        started_at=T0,
        ended_at=T0 + timedelta(minutes=10),
        exit_reason="killed",
        signal=9,
        harness_interrupted=True,
        note="orphan killed on resume",
        stdout=LogStats(kept_bytes=2048, dropped_bytes=0),
        stderr=LogStats(kept_bytes=100, dropped_bytes=5 * 2**20),
    )
    second = AgentAttempt(
        pid=4343,
        started_at=T0 + timedelta(minutes=15),
        ended_at=T0 + timedelta(minutes=65),
        exit_reason="timed_out",
        exit_code=-15,
        signal=15,
        stragglers=[ProcessInfo(pid=4400, cmdline="sleep 999 --marker", found_by="descendant")],
    )
    stages = {
        name: StageStatus(
            state="done", started_at=T0, ended_at=T0 + timedelta(seconds=5), duration_s=5.0
        )
        for name in ("prepare", "solve", "collect", "integrity", "evaluate", "score")
    }
    return RunRecord(
        spec=spec,
        harness=HarnessInfo(version="0.1.0", python="3.11.9", hostname="testhost"),
        stages=stages,
        baseline=BaselineRef(score=0.05, source="measured", detail="ptb-tiny on arith test"),
        agent=AgentOutcome(
            started_at=T0,
            deadline=T0 + timedelta(hours=1),
            budget_s=3600,
            resume_policy="deadline",
            attempts=[first, second],
            exit_reason="timed_out",
            wall_s=3600.0,
            downtime_s=300.0,
        ),
        collect=CollectOutcome(
            status="collected",
            files=[
                CollectedFile(path="model.safetensors", bytes=3 * 2**20),
                CollectedFile(path="config.json", bytes=1000),
            ],
            skipped=[SkippedFile(path="optimizer.pt", reason="pickle file, never loaded")],
            total_bytes=3 * 2**20 + 1000,
        ),
        verdict=Verdict(decision="clean", checks=["tamper"]),
        metrics=EvalMetrics(
            benchmark="arith",
            split="test",
            score=0.4567,
            n_samples=500,
            model_path="final_model",
            duration_s=42.0,
        ),
        outcome=Outcome(score=0.4567, source="evaluated", base_score=0.05),
    )


def test_show_renders_a_stored_run(ptb: PtbRunner, tmp_path: Path) -> None:
    run_dir = tmp_path / "adhoc" / "run1"
    record = _stored_record()
    save_run(run_dir, record)

    done = ptb("show", str(run_dir))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    for expected in [
        record.spec.run_id,
        "python my_agent.py",
        "ptb-tiny",
        "arith",
        "1h",  # budget
        "deadline",  # resume policy
        "WANDB_MODE",
        "timed_out",
        "5m",  # downtime
        "orphan killed on resume",
        "interrupted while this attempt ran",
        "sleep 999 --marker",
        "descendant",
        "5.0 MiB dropped",
        "optimizer.pt: pickle file, never loaded",
        "2 (3.0 MiB)",  # collected files and total size
        "clean",
        "5.0 (measured)",  # baseline
        "500",  # n_samples
        "45.7 (evaluated)",  # outcome ×100, one decimal
    ]:
        assert expected in text, f"{expected!r} missing from:\n{text}"
    assert "Traceback" not in done.stdout + done.stderr

    as_json = ptb("show", str(run_dir), "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert RunRecord.model_validate_json(as_json.stdout) == record


def test_show_a_failed_run_names_the_error_and_how_to_resume(
    ptb: PtbRunner, tmp_path: Path
) -> None:
    record = _stored_record()
    record.stages["evaluate"] = StageStatus(
        state="failed",
        started_at=T0,
        ended_at=T0 + timedelta(seconds=3),
        duration_s=3.0,
        error=ErrorInfo(type="InfrastructureError", message="GPU lost", hint="retry the run"),
    )
    record.stages["score"] = StageStatus()
    record.metrics = record.outcome = None
    save_run(tmp_path / "run", record)
    done = ptb("show", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    assert "InfrastructureError: GPU lost (hint: retry the run)" in done.stdout
    assert "ptb run --resume" in done.stdout and "pending" in done.stdout


def test_show_corrupt_run_json_is_one_line(ptb: PtbRunner, tmp_path: Path) -> None:
    (tmp_path / "run.json").write_text('{"schema_version": 2, "spec": ')
    done = ptb("show", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and str(tmp_path / "run.json") in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def _wait_for_running_agent(results: Path, harness: subprocess.Popen[str]) -> Path:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert harness.poll() is None, harness.communicate()
        for run_json in results.glob("adhoc/*/run.json"):
            try:
                data = json.loads(run_json.read_text())
            except (OSError, ValueError):
                continue  # being replaced right now
            attempts = (data.get("agent") or {}).get("attempts") or []
            if data["stages"]["solve"]["state"] == "running" and attempts and attempts[-1]["pid"]:
                return run_json.parent
        time.sleep(0.2)
    harness.kill()
    raise AssertionError(f"the run never reached a running agent: {harness.communicate()}")


@pytest.mark.e2e
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_interrupted_harness_exits_128_plus_signal(
    cache_dir: Path, tiny_model_dir: Path, tmp_path: Path, signum: int, code: int
) -> None:
    env = os.environ | {
        "PTB_CACHE": str(cache_dir),
        "COLUMNS": "200",
        "PTB_GRACE_S": "3",
        "PTB_MONITOR_S": "2",
    }
    harness = subprocess.Popen(
        [sys.executable, "-m", "posttrainbench", "run", "--agent", "command",
         "--agent-cmd", "sleep 300", "--base-model", "ptb-tiny", "--benchmark", "arith",
         "--budget", "2m", "--results", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_dir = _wait_for_running_agent(tmp_path, harness)
    harness.send_signal(signum)
    _, stderr = harness.communicate(timeout=60)
    assert harness.returncode == code, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"interrupted by {signal.Signals(signum).name}"), stderr
    assert f"ptb run --resume {run_dir}" in last
    record = RunRecord.model_validate_json((run_dir / "run.json").read_text())
    assert record.agent is not None and record.agent.attempts[-1].harness_interrupted
