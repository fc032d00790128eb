"""The stage machine of one run: prepare → solve → collect → integrity → evaluate → score.

Each stage reads from and writes to the run directory and records its state in run.json, which
is saved atomically on every transition. A stage that is `done` is never redone; `resume` starts
at the first stage that is not. The agent's failure and evaluation failure are data (recorded,
and the score falls back to the base model's); a failure of the harness in any stage stops the
run with run.json saying where and why.
Nothing here knows a backend: agents, sandboxes and benchmarks come from their registries.
"""

from __future__ import annotations

import logging
import platform
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from posttrainbench import __version__
from posttrainbench.agents import AgentContext, get_agent
from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.config import Settings
from posttrainbench.errors import PtbError, ResultsDirError
from posttrainbench.integrity import manifest, policy
from posttrainbench.records import (
    STAGES,
    AgentAttempt,
    AgentOutcome,
    ErrorInfo,
    EvalMetrics,
    HarnessInfo,
    Outcome,
    RunRecord,
    RunSpec,
    StageName,
    now,
)
from posttrainbench.results import baselines
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.store import ensure_writable, load_run, read_json, save_run, write_json
from posttrainbench.sandbox import LaunchRequest, get_sandbox, supervise
from posttrainbench.sandbox.base import scrubbed_environ
from posttrainbench.sandbox.monitor import Monitor
from posttrainbench.workspace import builder, collect

log = logging.getLogger(__name__)
KEY_PACKAGES = ("torch", "transformers", "peft", "trl", "inspect-ai", "pydantic")
StageHook = Callable[[StageName, str], None]


@dataclass
class RunContext:
    paths: RunPaths
    record: RunRecord
    settings: Settings

    @property
    def spec(self) -> RunSpec:
        return self.record.spec

    def save(self) -> None:
        save_run(self.paths.root, self.record)


def harness_info() -> HarnessInfo:
    packages = {}
    for name in KEY_PACKAGES:
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            continue
    return HarnessInfo(
        version=__version__,
        python=platform.python_version(),
        packages=packages,
        hostname=socket.gethostname(),
    )


def validate(spec: RunSpec) -> None:
    """Fail before anything runs: unknown names, unevaluable benchmark, agent prerequisites."""
    MODELS.get(spec.base_model)
    BENCHMARKS.get(spec.benchmark).task_factory()
    get_agent(spec.agent).check(spec)
    get_sandbox(spec.sandbox)


def create_run(spec: RunSpec, settings: Settings) -> Path:
    validate(spec)
    sweep_dir = settings.results_dir / spec.sweep
    ensure_writable(sweep_dir)
    run_dir = sweep_dir / spec.run_id
    run_dir.mkdir()
    save_run(run_dir, RunRecord(spec=spec, harness=harness_info()))
    return run_dir


# --- stages -------------------------------------------------------------------------------------


def _base_model_path(ctx: RunContext) -> Path:
    return MODELS.get(ctx.spec.base_model).locate(ctx.settings.models_dir)


def stage_prepare(ctx: RunContext) -> None:
    model = MODELS.get(ctx.spec.base_model)
    bench = BENCHMARKS.get(ctx.spec.benchmark)
    model_path = _base_model_path(ctx)
    prompt = builder.build_workspace(
        ctx.paths.workspace, ctx.spec, model, bench, model_path, ctx.settings.data_dir
    )
    ctx.paths.prompt.write_text(prompt)
    write_json(
        ctx.paths.evaluator_manifest,
        manifest.snapshot(ctx.paths.workspace, builder.EVALUATOR_PATHS),
    )


def stage_solve(ctx: RunContext) -> None:
    rec = ctx.record
    if rec.agent is None:
        started = now()
        rec.agent = AgentOutcome(
            started_at=started, deadline=started + timedelta(seconds=ctx.spec.budget_s)
        )
    outcome = rec.agent
    for attempt in outcome.attempts:
        if attempt.ended_at is None:  # the harness died while this attempt ran
            alive = supervise.reap_orphan(
                attempt.pid, attempt.proc_create_time, ctx.settings.grace_s
            )
            attempt.ended_at, attempt.exit_reason = now(), "killed"
            attempt.harness_interrupted = True
            attempt.note = "harness interrupted" + ("; orphan killed on resume" if alive else "")
            outcome.exit_reason = "killed"
    ctx.save()
    deadline = outcome.deadline.timestamp()
    # Relaunch only an agent that the harness cut short, and only while its time lasts.
    last = outcome.attempts[-1] if outcome.attempts else None
    if last is not None and (not last.harness_interrupted or time.time() >= deadline):
        return _close_solve(ctx)
    builder.start_timer(ctx.paths.workspace, deadline)
    agent_ctx = AgentContext(
        spec=ctx.spec,
        workspace=ctx.paths.workspace,
        base_model_path=_base_model_path(ctx),
        prompt=ctx.paths.prompt.read_text(),
    )
    launch = get_agent(ctx.spec.agent).launch(agent_ctx)
    env = (
        scrubbed_environ()
        | {
            "PTB_PROMPT_FILE": str(ctx.paths.workspace / "prompt.md"),
            "PTB_BASE_MODEL_PATH": str(agent_ctx.base_model_path),
            "PYTHONUNBUFFERED": "1",
        }
        | launch.env
    )
    request = LaunchRequest(
        argv=launch.argv,
        workdir=ctx.paths.workspace,
        env=env,
        stdout=ctx.paths.agent_stdout,
        stderr=ctx.paths.agent_stderr,
        read_only=[agent_ctx.base_model_path],
    )
    proc = get_sandbox(ctx.spec.sandbox).launch(request)
    attempt = AgentAttempt(
        pid=proc.pid, proc_create_time=supervise.create_time(proc.pid), started_at=now()
    )
    outcome.attempts.append(attempt)
    ctx.save()
    try:
        with Monitor(proc.pid, ctx.paths.workspace, ctx.paths.monitor_csv, ctx.settings.monitor_s):
            finished = supervise.wait(proc, deadline, ctx.settings.grace_s)
    except BaseException:
        attempt.ended_at, attempt.exit_reason, attempt.note = now(), "killed", "harness interrupted"
        attempt.harness_interrupted = True
        outcome.exit_reason = "killed"
        ctx.save()
        raise
    attempt.ended_at = now()
    attempt.exit_code, attempt.signal = finished.exit_code, finished.signal
    attempt.exit_reason = outcome.exit_reason = finished.exit_reason
    _close_solve(ctx)


def _close_solve(ctx: RunContext) -> None:
    outcome = ctx.record.agent
    assert outcome is not None
    outcome.wall_s = round(
        sum(((a.ended_at or now()) - a.started_at).total_seconds() for a in outcome.attempts), 2
    )
    if outcome.exit_reason is None and outcome.attempts:
        outcome.exit_reason = outcome.attempts[-1].exit_reason


def stage_collect(ctx: RunContext) -> None:
    ctx.record.collect = collect.collect_final_model(
        ctx.paths.workspace_final_model, ctx.paths.final_model
    )


def stage_integrity(ctx: RunContext) -> None:
    before = read_json(ctx.paths.evaluator_manifest, manifest.Manifest)
    after = manifest.snapshot(ctx.paths.workspace, builder.EVALUATOR_PATHS)
    checks = [manifest.compare(before, after)]
    for check in checks:
        write_json(ctx.paths.check_file(check.name), check)
    verdict = policy.decide(checks)
    write_json(ctx.paths.verdict, verdict)
    ctx.record.verdict = verdict


class EvaluationError(RuntimeError):
    pass


def run_evaluation(model_dir: Path, benchmark: str, family: str, out_dir: Path) -> EvalMetrics:
    """The pristine evaluation in its own process, so a crash there cannot take the harness."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = out_dir / "metrics.json"
    metrics_path.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "posttrainbench.evaluate",
        "--benchmark", benchmark, "--model-path", str(model_dir), "--split", "test",
        "--template-family", family, "--log-dir", str(out_dir),
    ]  # fmt: skip
    with (out_dir / "evaluate.log").open("wb") as logf:
        code = subprocess.run(cmd, stdout=logf, stderr=subprocess.STDOUT, check=False).returncode
    if code != 0 or not metrics_path.is_file():
        tail = (out_dir / "evaluate.log").read_text(errors="replace").strip().splitlines()[-1:]
        raise EvaluationError(f"evaluation exited {code}: {' '.join(tail) or 'no output'}")
    return read_json(metrics_path, EvalMetrics)


def stage_evaluate(ctx: RunContext) -> None:
    ctx.record.metrics = ctx.record.eval_error = None
    if ctx.record.collect is None or ctx.record.collect.status != "collected":
        return
    family = MODELS.get(ctx.spec.base_model).template_family
    try:
        ctx.record.metrics = run_evaluation(
            ctx.paths.final_model, ctx.spec.benchmark, family, ctx.paths.eval_dir
        )
    except EvaluationError as exc:
        ctx.record.eval_error = ErrorInfo(type="EvaluationError", message=str(exc))


def base_score(settings: Settings, base_model: str, benchmark: str) -> float:
    """Published or cached base score; measured with the pristine evaluation when unknown."""
    model = MODELS.get(base_model)
    score = baselines.lookup(settings.baselines_dir, model.baseline_key, benchmark)
    if score is None:
        out = settings.baselines_dir / f"{model.baseline_key}__{benchmark}"
        metrics = run_evaluation(
            model.locate(settings.models_dir), benchmark, model.template_family, out
        )
        baselines.record_measured(settings.baselines_dir, model.baseline_key, metrics)
        score = metrics.score
    return score


def stage_score(ctx: RunContext) -> None:
    rec = ctx.record
    base = base_score(ctx.settings, ctx.spec.base_model, ctx.spec.benchmark)
    if rec.collect is None or rec.collect.status != "collected":
        reason = rec.collect.reason if rec.collect else "nothing collected"
        rec.outcome = Outcome(
            score=base, source="fallback_no_model", base_score=base, reason=reason
        )
    elif rec.verdict is not None and rec.verdict.decision == "flagged":
        reason = "; ".join(rec.verdict.reasons)
        rec.outcome = Outcome(score=base, source="fallback_flagged", base_score=base, reason=reason)
    elif rec.metrics is None:
        reason = rec.eval_error.message if rec.eval_error else "no metrics"
        rec.outcome = Outcome(
            score=base, source="fallback_eval_failed", base_score=base, reason=reason
        )
    else:
        rec.outcome = Outcome(score=rec.metrics.score, source="evaluated", base_score=base)


STAGE_FUNCS: dict[StageName, Callable[[RunContext], None]] = {
    "prepare": stage_prepare,
    "solve": stage_solve,
    "collect": stage_collect,
    "integrity": stage_integrity,
    "evaluate": stage_evaluate,
    "score": stage_score,
}
assert tuple(STAGE_FUNCS) == STAGES


def _error_info(exc: BaseException) -> ErrorInfo:
    return ErrorInfo(
        type=type(exc).__name__,
        message=exc.message if isinstance(exc, PtbError) else str(exc) or type(exc).__name__,
        hint=exc.hint if isinstance(exc, PtbError) else None,
        traceback=None if isinstance(exc, PtbError) else traceback.format_exc(),
    )


def load(run_dir: Path) -> RunRecord:
    if not RunPaths(run_dir).run_json.is_file():
        raise ResultsDirError(
            f"{run_dir} is not a run directory (no run.json)", "pass <results>/<sweep>/<run_id>"
        )
    return load_run(run_dir)


def execute(run_dir: Path, settings: Settings, on_stage: StageHook | None = None) -> RunRecord:
    """Run every stage that is not done yet. Raises after recording a stage failure."""
    ctx = RunContext(paths=RunPaths(run_dir), record=load(run_dir), settings=settings)
    for name in STAGES:
        status = ctx.record.stages[name]
        if status.state == "done":
            continue
        if on_stage:
            on_stage(name, "start")
        status.state, status.started_at, status.ended_at, status.error = (
            "running",
            now(),
            None,
            None,
        )
        ctx.save()
        try:
            STAGE_FUNCS[name](ctx)
        except BaseException as exc:
            status.state, status.ended_at, status.error = "failed", now(), _error_info(exc)
            status.duration_s = round((status.ended_at - status.started_at).total_seconds(), 2)
            ctx.save()
            raise
        status.state = "done"
        status.ended_at = now()
        status.duration_s = round((status.ended_at - status.started_at).total_seconds(), 2)
        ctx.save()
        if on_stage:
            on_stage(name, status.state)
    return ctx.record
