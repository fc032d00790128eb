"""What an agent leaves behind cannot break or bend the run: detached writers, special files,
huge sparse files, slow evaluations and repeated signals, each through the real CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from posttrainbench.records import RunSpec
from posttrainbench.results.layout import RunPaths
from posttrainbench.workspace.collect import verify_copy
from tests.conftest import PtbRunner, ptb_env
from tests.e2e.test_runs import (
    BASE,
    COPY_BASE,
    _alive,
    _command_run,
    _record,
    _runs,
    _wait_for_agent,
)
from tests.waiting import wait_until

DAEMON = """
import os, shutil, time
shutil.copytree(os.environ["PTB_BASE_MODEL_PATH"], "final_model",
                ignore=shutil.ignore_patterns("ptb_build.json"))
if os.fork() == 0:          # daemonise: fork, setsid, fork; the middle process exits at once
    os.setsid()
    if os.fork() == 0:
        open("writer.pid", "w").write(str(os.getpid()))
        while True:         # keep writing into the deliverable, in the workspace and the run dir
            for target in ("final_model/config.json", "../final_model/config.json"):
                try:
                    with open(target, "a") as f:
                        f.write(" ")
                except OSError:
                    pass
            time.sleep(0.05)
    os._exit(0)
deadline = time.monotonic() + 60
while not os.path.exists("writer.pid"):  # the agent ends normally once the writer is running
    if time.monotonic() > deadline:
        raise SystemExit("the writer never started")
    time.sleep(0.05)
"""


def test_detached_writer_is_gone_before_collect(ptb: PtbRunner, tmp_path: Path) -> None:
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON)
    rec = _command_run(ptb, tmp_path / "r", f"python {script}")
    (run_dir,) = _runs(tmp_path / "r")
    paths = RunPaths(run_dir)
    writer = int((paths.workspace / "writer.pid").read_text())
    assert not psutil.pid_exists(writer) or psutil.Process(writer).status() == "zombie"
    assert rec.agent and rec.agent.exit_reason == "finished"
    killed = rec.agent.attempts[-1].stragglers
    assert writer in {k.pid for k in killed}, killed
    assert {k.found_by for k in killed} <= {"subreaper", "token"}
    # The collected copy is what was evaluated and is still byte for byte what collect recorded.
    assert rec.collect and rec.collect.status == "collected"
    assert verify_copy(paths.final_model, rec.collect) == []
    assert rec.outcome and rec.outcome.source == "evaluated", rec.eval_error


def test_fifo_config_ends_truthfully_and_is_in_the_report(ptb: PtbRunner, tmp_path: Path) -> None:
    cmd = f"{COPY_BASE} && rm final_model/config.json && mkfifo final_model/config.json"
    rec = _command_run(ptb, tmp_path, cmd)
    assert rec.collect and rec.collect.status == "refused"
    assert "config.json" in (rec.collect.reason or "") and "fifo" in (rec.collect.reason or "")
    assert rec.outcome and rec.outcome.source == "fallback_no_model"
    report = json.loads(ptb("report", str(tmp_path), "--format", "json").stdout)
    (section,) = report["sections"]
    (row,) = section["rows"]
    assert row["fallbacks"] == {
        "fallback_no_model": 1,
        "fallback_eval_failed": 0,
        "fallback_flagged": 0,
    }
    assert [c["source"] for c in row["cells"]] == ["fallback_no_model"]


def test_sparse_giant_is_refused_by_the_size_bound(ptb: PtbRunner, tmp_path: Path) -> None:
    cmd = f"{COPY_BASE} && truncate -s 3G final_model/model-00002-of-00002.safetensors"
    rec = _command_run(ptb, tmp_path, cmd, env={"PTB_COLLECT_MAX_GB": "1"})
    assert rec.collect and rec.collect.status == "refused"
    assert "PTB_COLLECT_MAX_GB" in (rec.collect.reason or "")
    (run_dir,) = _runs(tmp_path)
    assert not RunPaths(run_dir).final_model.exists()
    assert rec.outcome and rec.outcome.source == "fallback_no_model"


def test_evaluation_timeout_falls_back(ptb: PtbRunner, tmp_path: Path) -> None:
    rec = _command_run(ptb, tmp_path, COPY_BASE, "2m", "--eval-timeout", "1s")
    assert rec.spec.eval_timeout_s == 1
    assert rec.eval_error and "timed out" in rec.eval_error.message
    assert rec.outcome and rec.outcome.source == "fallback_eval_failed"
    assert rec.stages["evaluate"].duration_s is not None and rec.stages["evaluate"].duration_s < 15
    assert not _alive(f"--log-dir {tmp_path}")  # this run's evaluation (other tests may run)


def test_second_signal_during_shutdown_leaves_no_agent(cache_dir: Path, tmp_path: Path) -> None:
    cmd = (
        "trap 'touch stopping' TERM INT; touch started; while :; do sleep 0.2; done"
        " # stubborn-agent"
    )
    harness = subprocess.Popen(
        [sys.executable, "-m", "posttrainbench", "run", "--agent", "command", "--agent-cmd", cmd,
         *BASE, "--budget", "5m", "--results", str(tmp_path)],
        env=ptb_env(cache_dir) | {"PTB_GRACE_S": "4"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    run_dir = _wait_for_agent(tmp_path, "started")
    workspace = RunPaths(run_dir).workspace
    harness.send_signal(signal.SIGINT)
    # inside the grace period: the harness has asked the agent to stop, and it would not
    wait_until((workspace / "stopping").exists, "the harness signals the agent", 30)
    harness.send_signal(signal.SIGINT)
    harness.send_signal(signal.SIGTERM)
    _, stderr = harness.communicate(timeout=60)
    assert harness.returncode in (130, 143), stderr
    assert not _alive("stubborn-agent")
    rec = _record(run_dir)
    (attempt,) = rec.agent.attempts if rec.agent else []
    assert attempt.harness_interrupted and attempt.ended_at is not None
    assert rec.stages["solve"].state == "failed"
    assert RunSpec.model_validate(rec.spec.model_dump()) == rec.spec
