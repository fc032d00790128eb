"""Whole runs through the real CLI, runner and host sandbox: deadline, kill and resume, refusals,
tampering and evaluation failure, and the report over them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from posttrainbench.records import RunRecord
from posttrainbench.results.layout import RunPaths
from tests.conftest import PtbRunner, ptb_env

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


def _command_run(
    ptb: PtbRunner,
    results: Path,
    cmd: str,
    budget: str = "2m",
    *extra: str,
    env: dict[str, str] | None = None,
) -> RunRecord:
    done = ptb("run", "--agent", "command", "--agent-cmd", cmd, *BASE, "--budget", budget,
               "--results", str(results), *extra, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_dir,) = _runs(results)
    rec = _record(run_dir)
    assert rec.complete
    return rec


def test_deadline_ends_the_agent_and_falls_back(ptb: PtbRunner, tmp_path: Path) -> None:
    rec = _command_run(ptb, tmp_path, "sleep 611 & sleep 611", budget="20s")
    assert rec.agent and rec.agent.exit_reason == "timed_out"
    (attempt,) = rec.agent.attempts
    assert attempt.deadline and attempt.ended_at
    # Recorded timestamps, not the wall clock of a loaded machine: stopped at the deadline,
    # within the grace period (PTB_GRACE_S=3) and the kill wait.
    given = (attempt.deadline - attempt.started_at).total_seconds()
    assert given == pytest.approx(20, abs=1)
    overrun = (attempt.ended_at - attempt.deadline).total_seconds()
    assert -1 < overrun < 3 + 5 + 2
    # the wall time is the recorded attempt's, not a window on this machine's clock
    assert rec.agent.budget_s == 20 and rec.agent.wall_s == pytest.approx(attempt.ran_s, abs=0.01)
    assert not _alive("sleep 611")
    (run_dir,) = _runs(tmp_path)
    samples = RunPaths(run_dir).monitor_csv.read_text().splitlines()
    assert samples[0].startswith("time,cpu_percent,rss_mb") and len(samples) >= 3
    assert rec.outcome and rec.outcome.source == "fallback_no_model"
    assert rec.baseline and rec.outcome.score == rec.outcome.base_score == rec.baseline.score


def _wait_for_agent(results: Path, marker: str, timeout: float = 90) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = _runs(results)
        if runs and (RunPaths(runs[0]).workspace / marker).exists():
            return runs[0]
        time.sleep(0.2)
    raise AssertionError("agent never started")


def test_sigkill_then_resume_loses_nothing(ptb: PtbRunner, cache_dir: Path, tmp_path: Path) -> None:
    cmd = "echo launch >> launches.txt; sleep 617"
    harness = subprocess.Popen(
        [sys.executable, "-m", "posttrainbench", "run", "--agent", "command", "--agent-cmd", cmd,
         *BASE, "--budget", "25s", "--results", str(tmp_path)],
        env=ptb_env(cache_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    run_dir = _wait_for_agent(tmp_path, "launches.txt")
    # One harness per run: a second one refuses, and leaves the first one's agent alone.
    second = ptb("run", "--resume", str(run_dir))
    assert second.returncode == 2 and "being run by another harness" in second.stderr
    assert "Traceback" not in second.stderr and _alive("sleep 617")
    harness.send_signal(signal.SIGKILL)
    harness.wait()
    killed = _record(run_dir)
    assert killed.stages["solve"].state == "running"
    assert _alive("sleep 617"), "the orphaned agent should outlive a SIGKILLed harness"

    done = ptb("run", "--resume", str(run_dir))
    assert done.returncode == 0, done.stderr
    rec = _record(run_dir)
    assert rec.complete and rec.outcome is not None and rec.agent is not None
    assert rec.spec == killed.spec and rec.stages["prepare"] == killed.stages["prepare"]
    first, second_attempt = rec.agent.attempts
    assert first.exit_reason == "killed" and first.harness_interrupted
    assert "killed" in (first.note or "")  # alive at resume, then stopped
    assert second_attempt.exit_reason == "timed_out"
    # Relaunched (two launches, one file) and kept what the first launch wrote.
    ws = RunPaths(run_dir).workspace
    assert (ws / "launches.txt").read_text() == "launch\nlaunch\n"
    # Budget: the orphan ran on until resume, so that time is charged; the relaunch got the rest.
    assert rec.agent.resume_policy == "remaining" and second_attempt.deadline
    given = (second_attempt.deadline - second_attempt.started_at).total_seconds()
    assert given == pytest.approx(25 - first.ran_s, abs=1.0)
    assert rec.agent.wall_s == pytest.approx(first.ran_s + second_attempt.ran_s, abs=0.1)
    assert rec.agent.downtime_s >= 0
    assert RunPaths(run_dir).prompt.is_file()
    assert not _alive("sleep 617")


def test_trainer_saved_model_is_collected_and_evaluated(ptb: PtbRunner, tmp_path: Path) -> None:
    """Trainer.save_model always writes training_args.bin (a pickle) beside the weights."""
    script = tmp_path / "save.py"
    script.write_text(
        "import os\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments\n"
        "base = os.environ['PTB_BASE_MODEL_PATH']\n"
        "model = AutoModelForCausalLM.from_pretrained(base)\n"
        "args = TrainingArguments(output_dir='out', report_to=[], use_cpu=True)\n"
        "tok = AutoTokenizer.from_pretrained(base)\n"
        "trainer = Trainer(model=model, args=args, processing_class=tok)\n"
        "trainer.save_model('final_model')\n"
        "os.symlink(os.path.abspath('final_model'), 'best')\n"
    )
    rec = _command_run(ptb, tmp_path / "r", f"python {script}")
    (run_dir,) = _runs(tmp_path / "r")
    assert (RunPaths(run_dir).workspace_final_model / "training_args.bin").is_file()
    assert rec.collect and rec.collect.status == "collected", rec.collect
    assert "model.safetensors" in rec.collect.file_names
    skipped = {s.path: s.reason for s in rec.collect.skipped}
    assert "pickle" in skipped["training_args.bin"]
    assert not (RunPaths(run_dir).final_model / "training_args.bin").exists()
    assert rec.outcome and rec.outcome.source == "evaluated", rec.eval_error

    out = _command_run(ptb, tmp_path / "b", 'ln -s "$PTB_BASE_MODEL_PATH" final_model')
    assert out.collect and out.collect.status == "refused"
    assert "outside the workspace" in (out.collect.reason or "")
    assert out.outcome and out.outcome.source == "fallback_no_model"


def test_tampering_flags_and_broken_model_falls_back(ptb: PtbRunner, tmp_path: Path) -> None:
    tamper = _command_run(ptb, tmp_path / "t", f"{COPY_BASE} && echo 'print(1.0)' >> evaluate.py")
    assert tamper.verdict and tamper.verdict.decision == "flagged"
    assert "evaluate.py" in tamper.verdict.reasons[0]
    assert tamper.metrics is not None  # evaluated for the record, but not counted
    assert tamper.outcome and tamper.outcome.source == "fallback_flagged"
    check = json.loads((RunPaths(_runs(tmp_path / "t")[0]).check_file("tamper")).read_text())
    assert check["status"] == "failed"
    assert [(e["path"], e["summary"]) for e in check["evidence"]] == [
        ("evaluate.py", "modified evaluator file evaluate.py")
    ]

    broken = _command_run(
        ptb, tmp_path / "e", f"{COPY_BASE} && echo junk > final_model/model.safetensors"
    )
    assert broken.collect and broken.collect.status == "collected"
    assert broken.stages["evaluate"].state == "done" and broken.eval_error is not None
    assert broken.outcome and broken.outcome.source == "fallback_eval_failed"
    # provenance could not read the junk weights: undecided (flagged, failed closed), but the
    # fallback's cause is the failed evaluation
    assert broken.verdict and broken.verdict.errored == ["provenance"], broken.verdict

    report = ptb("report", str(tmp_path), "--format", "json")
    assert report.returncode == 0, report.stderr
    (section,) = json.loads(report.stdout)["sections"]
    # Two agent commands: two configurations, never merged into one row.
    rows = section["rows"]
    assert len(rows) == 2 and {sum(r["fallbacks"].values()) for r in rows} == {1}
    assert {c["source"] for r in rows for c in r["cells"]} == {
        "fallback_flagged",
        "fallback_eval_failed",
    }
