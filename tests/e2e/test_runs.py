"""Whole runs through the real CLI, runner and host sandbox: deadline, kill and resume, refusals,
tampering and evaluation failure, and the report over them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from posttrainbench.records import RunRecord
from posttrainbench.results.layout import RunPaths
from tests.conftest import PtbRunner

BASE = ["--base-model", "ptb-tiny", "--benchmark", "arith"]
COPY_BASE = 'cp -r "$PTB_BASE_MODEL_PATH" final_model && rm -f final_model/ptb_build.json'


def _runs(results: Path) -> list[Path]:
    return sorted(p.parent for p in results.rglob("run.json") if "workspace" not in p.parts)


def _record(run_dir: Path) -> RunRecord:
    return RunRecord.model_validate_json((run_dir / "run.json").read_text())


def _alive(marker: str) -> list[psutil.Process]:
    procs = []
    for p in psutil.process_iter(["cmdline", "status"]):
        if marker in " ".join(p.info["cmdline"] or []) and p.info["status"] != "zombie":
            procs.append(p)
    return procs


def _command_run(ptb: PtbRunner, results: Path, cmd: str, budget: str = "2m") -> RunRecord:
    done = ptb("run", "--agent", "command", "--agent-cmd", cmd, *BASE, "--budget", budget,
               "--results", str(results))  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = _runs(results)
    rec = _record(run_dir)
    assert rec.complete
    return rec


def test_deadline_ends_the_agent_and_falls_back(ptb: PtbRunner, tmp_path: Path) -> None:
    start = time.monotonic()
    rec = _command_run(ptb, tmp_path, "sleep 611 & sleep 611", budget="20s")
    # The whole run may include measuring the base score once per cache; the agent stage may not.
    assert time.monotonic() - start < 90
    assert (rec.stages["solve"].duration_s or 0) < 35
    assert rec.agent and rec.agent.exit_reason == "timed_out"
    assert 19 < (rec.agent.wall_s or 0) < 40
    assert not _alive("sleep 611")
    (run_dir,) = _runs(tmp_path)
    samples = RunPaths(run_dir).monitor_csv.read_text().splitlines()
    assert samples[0].startswith("time,cpu_percent,rss_mb") and len(samples) >= 3
    assert rec.outcome and rec.outcome.source == "fallback_no_model"
    assert rec.outcome.score == rec.outcome.base_score


def test_sigkill_then_resume_loses_nothing(ptb: PtbRunner, cache_dir: Path, tmp_path: Path) -> None:
    env = os.environ | {"PTB_CACHE": str(cache_dir), "PTB_GRACE_S": "3"}
    cmd = "echo started > progress.txt; sleep 617"
    harness = subprocess.Popen(
        [sys.executable, "-m", "posttrainbench", "run", "--agent", "command", "--agent-cmd", cmd,
         *BASE, "--budget", "25s", "--results", str(tmp_path)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = _runs(tmp_path)
        if runs and (RunPaths(runs[0]).workspace / "progress.txt").exists():
            break
        time.sleep(0.2)
    else:
        raise AssertionError("agent never started")
    harness.send_signal(signal.SIGKILL)
    harness.wait()
    run_dir = runs[0]
    killed = _record(run_dir)
    assert killed.stages["solve"].state == "running"
    assert _alive("sleep 617"), "the orphaned agent should outlive a SIGKILLed harness"

    done = ptb("run", "--resume", str(run_dir))
    assert done.returncode == 0, done.stderr
    rec = _record(run_dir)
    assert rec.complete and rec.outcome is not None
    assert rec.spec == killed.spec and rec.stages["prepare"] == killed.stages["prepare"]
    first, *rest = rec.agent.attempts if rec.agent else []
    assert first.exit_reason == "killed" and "orphan killed" in (first.note or "")
    assert all(a.exit_reason == "timed_out" for a in rest)
    assert (RunPaths(run_dir).workspace / "progress.txt").read_text() == "started\n"
    assert RunPaths(run_dir).prompt.is_file()
    assert not _alive("sleep 617")


def test_pickle_and_symlink_models_are_refused(ptb: PtbRunner, tmp_path: Path) -> None:
    pickle = _command_run(
        ptb, tmp_path / "a", f"{COPY_BASE} && echo x > final_model/pytorch_model.bin"
    )
    assert pickle.collect and pickle.collect.status == "refused"
    assert "pytorch_model.bin" in (pickle.collect.reason or "")
    assert pickle.outcome and pickle.outcome.source == "fallback_no_model"
    link = _command_run(ptb, tmp_path / "b", 'ln -s "$PTB_BASE_MODEL_PATH" final_model')
    assert link.collect and link.collect.reason == "final_model is a symlink"
    assert link.outcome and link.outcome.source == "fallback_no_model"


def test_tampering_flags_and_broken_model_falls_back(ptb: PtbRunner, tmp_path: Path) -> None:
    tamper = _command_run(ptb, tmp_path / "t", f"{COPY_BASE} && echo 'print(1.0)' >> evaluate.py")
    assert tamper.verdict and tamper.verdict.decision == "flagged"
    assert "evaluate.py" in tamper.verdict.reasons[0]
    assert tamper.metrics is not None  # evaluated for the record, but not counted
    assert tamper.outcome and tamper.outcome.source == "fallback_flagged"
    check = json.loads((RunPaths(_runs(tmp_path / "t")[0]).check_file("tamper")).read_text())
    assert check["evidence"]["modified"] == ["evaluate.py"]

    broken = _command_run(
        ptb, tmp_path / "e", f"{COPY_BASE} && echo junk > final_model/model.safetensors"
    )
    assert broken.collect and broken.collect.status == "collected"
    assert broken.stages["evaluate"].state == "done" and broken.eval_error is not None
    assert broken.outcome and broken.outcome.source == "fallback_eval_failed"

    report = ptb("report", str(tmp_path), "--format", "json")
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["rows"]
    assert [(r["agent"], r["n_runs"], r["fallbacks"]) for r in rows] == [("command", 2, 2)]
    assert set(rows[0]["benchmarks"]) == {"arith"}
