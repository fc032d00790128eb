"""Harness side of the pristine evaluation: runs `python -m posttrainbench.evaluate` as its own
process (its own process group, killed with the harness, bounded by a timeout), so a crash,
a hang or an out-of-memory there becomes an `EvaluationError`, never a dead harness."""

from __future__ import annotations

import sys
from pathlib import Path

from posttrainbench.errors import EvaluationError
from posttrainbench.records import EvalMetrics, format_duration
from posttrainbench.results.layout import EvalPaths
from posttrainbench.results.store import read_json
from posttrainbench.sandbox import supervise


def run_evaluation(
    model_dir: Path,
    benchmark: str,
    family: str,
    out: EvalPaths,
    *,
    timeout_s: float,
    grace_s: float,
) -> EvalMetrics:
    out.root.mkdir(parents=True, exist_ok=True)
    out.metrics.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "posttrainbench.evaluate",
        "--benchmark", benchmark, "--model-path", str(model_dir), "--split", "test",
        "--template-family", family, "--log-dir", str(out.root),
    ]  # fmt: skip
    done = supervise.run_bounded(cmd, out.log, timeout_s, grace_s)
    if done.timed_out:
        raise EvaluationError(
            f"evaluation timed out after {format_duration(timeout_s)}",
            "raise it with --eval-timeout or PTB_EVAL_TIMEOUT_S",
        )
    if done.returncode != 0 or not out.metrics.is_file():
        lines = out.log.read_text(errors="replace").strip().splitlines()[-1:]
        raise EvaluationError(
            f"evaluation exited {done.returncode}: {' '.join(lines) or 'no output'}",
            f"see {out.log}",
        )
    return read_json(out.metrics, EvalMetrics)
