"""Harness side of the pristine evaluation: runs `python -m posttrainbench.evaluate` as its own
process (its own process group, killed with the harness, bounded by a timeout), so a crash,
a hang or an out-of-memory there becomes an `EvaluationError`, never a dead harness.

Failures walk the benchmark's max-token ladder: a model pathology (OOM, runaway generation,
exit 3) steps down to the next, shorter max_tokens; an infrastructure failure (exit 4) or an
unexplained crash retries the same step until its attempts are used; bad input (exit 2) and the
overall time limit stop at once. Every attempt is recorded in metrics.json. One attempt
evaluates every seed of the run's suite (`--suite`): the first seed's failure is the attempt's,
a later seed's is recorded in metrics.json and left out of the mean (evaluate/run.py).

Evaluating a collected final_model, the harness passes the base model's folder (`tokenizer_dir`:
text is tokenised with the base's tokenizer) and collect's record (`collected`, written beside the
logs): the process refuses a folder that is not exactly the recorded files and weight set.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.catalog.benchmarks import LadderStep
from posttrainbench.errors import EvaluationError
from posttrainbench.records import (
    CollectOutcome,
    EvalAttempt,
    EvalAttemptOutcome,
    EvalMetrics,
    format_duration,
)
from posttrainbench.results.layout import EvalPaths
from posttrainbench.results.store import read_json, write_json
from posttrainbench.sandbox import gpu, supervise
from posttrainbench.sandbox.env import evaluation_environ

COLLECTED_FILE = "collected.json"
OUTCOME_OF_EXIT: dict[int, EvalAttemptOutcome] = {2: "fatal", 3: "pathology", 4: "infrastructure"}


class EvalOptions(BaseModel):
    """How the harness evaluates, beyond model and benchmark (recorded in metrics.json)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backend: str = "auto"
    base_url: str | None = None
    judge_model: str | None = None
    judge_base_url: str | None = None
    seed: int = 0
    suite: str | None = None  # whose seed policy applies; None: the default suite
    limit: int | None = None
    max_tokens: int | None = None  # one fixed length instead of the benchmark's ladder
    split: str = "test"


def ladder_of(benchmark: str, opts: EvalOptions) -> tuple[LadderStep, ...]:
    steps = BENCHMARKS.get(benchmark).max_tokens
    if opts.max_tokens is not None:
        return (LadderStep(max_tokens=opts.max_tokens, attempts=steps[0].attempts),)
    return steps


def command(
    model_dir: Path,
    benchmark: str,
    family: str | None,
    out: Path,
    opts: EvalOptions,
    tokens: int,
    tokenizer_dir: Path | None = None,
    collected: Path | None = None,
) -> list[str]:
    cmd = [
        sys.executable, "-P", "-m", "posttrainbench.evaluate",
        "--benchmark", benchmark, "--model-path", str(model_dir), "--split", opts.split,
        "--log-dir", str(out), "--max-tokens", str(tokens), "--seed", str(opts.seed),
        "--backend", opts.backend,
    ]  # fmt: skip
    for flag, value in (
        ("--template-family", family),
        ("--suite", opts.suite),
        ("--limit", opts.limit),
        ("--base-url", opts.base_url),
        ("--judge-model", opts.judge_model),
        ("--judge-base-url", opts.judge_base_url),
        ("--tokenizer-path", tokenizer_dir),
        ("--collected", collected),
    ):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd


def evaluation_env(
    benchmark: str, opts: EvalOptions, gpus: Sequence[int] | None = None
) -> dict[str, str]:
    """An allow-list of the harness's environment (sandbox.env): no provider key reaches the
    evaluation, but the judge's where the benchmark is judged."""
    env = evaluation_environ(
        os.environ,
        judged=BENCHMARKS.get(benchmark).judged,
        judge_model=opts.judge_model,
        judge_base_url=opts.judge_base_url,
    )
    env |= OFFLINE_ENV  # it reads local folders and caches only: no hub look-up, no retry
    return env if gpus is None else env | gpu.visible_gpus(gpus)


OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def run_evaluation(
    model_dir: Path,
    benchmark: str,
    family: str | None,
    out: EvalPaths,
    *,
    timeout_s: float,
    grace_s: float,
    options: EvalOptions | None = None,
    gpus: Sequence[int] | None = None,
    tokenizer_dir: Path | None = None,
    collected: CollectOutcome | None = None,
) -> EvalMetrics:
    """Evaluate down the max-token ladder. `gpus` (nvidia-smi indices) are the only GPUs the
    evaluation may use — a run's own, so that runs sharing a machine never evaluate on each
    other's GPUs; [] hides every GPU, None leaves the harness's GPU settings as they are."""
    opts = options or EvalOptions()
    env = evaluation_env(benchmark, opts, gpus)
    out.root.mkdir(parents=True, exist_ok=True)
    out.metrics.unlink(missing_ok=True)
    out.log.write_bytes(b"")
    record = out.root / COLLECTED_FILE if collected is not None else None
    if record is not None and collected is not None:
        record.write_text(collected.model_dump_json(indent=2))
    deadline = time.monotonic() + timeout_s
    attempts: list[EvalAttempt] = []
    for number, step in enumerate(ladder_of(benchmark, opts), start=1):
        for _ in range(step.attempts):
            left = deadline - time.monotonic()
            if left <= 0:
                raise _failed(attempts, f"timed out after {format_duration(timeout_s)}", out)
            cmd = command(
                model_dir, benchmark, family, out.root, opts, step.max_tokens, tokenizer_dir, record
            )
            with out.log.open("a") as log:
                log.write(f"== ladder step {number}: max_tokens {step.max_tokens}\n")
            started = time.monotonic()
            done = supervise.run_bounded(cmd, out.log, left, grace_s, append=True, env=env)
            took = round(time.monotonic() - started, 2)
            if done.timed_out:
                attempts.append(_attempt(number, step, "timeout", "time limit", took))
                raise _failed(attempts, f"timed out after {format_duration(timeout_s)}", out)
            if done.returncode == 0 and out.metrics.is_file():
                attempts.append(_attempt(number, step, "ok", None, took))
                metrics = read_json(out.metrics, EvalMetrics)
                metrics.attempts = attempts
                metrics.ladder_step = number
                write_json(out.metrics, metrics)
                return metrics
            outcome = OUTCOME_OF_EXIT.get(done.returncode or 0, "infrastructure")
            attempts.append(_attempt(number, step, outcome, _last_line(out.log), took))
            if outcome == "fatal":
                raise _failed(attempts, f"refused its input: {_last_line(out.log)}", out)
            if outcome == "pathology":
                break  # a shorter max_tokens is the remedy, not the same again
    raise _failed(attempts, f"every ladder step failed; last: {_last_line(out.log)}", out)


def _attempt(
    number: int, step: LadderStep, outcome: EvalAttemptOutcome, message: str | None, took: float
) -> EvalAttempt:
    return EvalAttempt(
        step=number, max_tokens=step.max_tokens, outcome=outcome, message=message, duration_s=took
    )


def _last_line(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").strip().splitlines() if ln.strip()]
    return lines[-1].removeprefix("error: ")[:300] if lines else "no output"


def _failed(attempts: list[EvalAttempt], message: str, out: EvalPaths) -> EvaluationError:
    write_json(out.root / "attempts.json", _Attempts(attempts=attempts))
    tried = ", ".join(f"{a.max_tokens}:{a.outcome}" for a in attempts)
    return EvaluationError(
        f"evaluation {message} ({len(attempts)} attempt(s): {tried or 'none'})", f"see {out.log}"
    )


class _Attempts(BaseModel):
    attempts: list[EvalAttempt]
