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
import os
import platform
import shutil
import socket
import traceback
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from posttrainbench import __version__
from posttrainbench.agents import agent_files, get_agent, install
from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.config import Settings
from posttrainbench.errors import (
    ConfigError,
    EvaluationError,
    HarnessInterrupted,
    InfrastructureError,
    PtbError,
    ResultsDirError,
)
from posttrainbench.evaluate import data
from posttrainbench.evaluate.chat_templates import template_path
from posttrainbench.evaluate.launch import EvalOptions, run_evaluation
from posttrainbench.integrity import frozen, manifest, policy, provenance, review
from posttrainbench.integrity.base import CheckContext, run_checks
from posttrainbench.records import (
    STAGES,
    BaselineRef,
    Decision,
    ErrorInfo,
    GpuPreflight,
    HarnessInfo,
    Outcome,
    RunRecord,
    RunSpec,
    StageName,
    StageStatus,
    now,
)
from posttrainbench.results import baselines
from posttrainbench.results.layout import RunPaths, check_sweep_name
from posttrainbench.results.lock import RunLock
from posttrainbench.results.store import ensure_writable, load_run, save_run, write_json
from posttrainbench.run_context import RunContext
from posttrainbench.sandbox import (
    get_sandbox,
    gpu,
    services,
    supervise,
)
from posttrainbench.solve import stage_solve
from posttrainbench.workspace import builder, collect

log = logging.getLogger(__name__)
KEY_PACKAGES = ("torch", "transformers", "peft", "trl", "inspect-ai", "pydantic")
StageHook = Callable[[StageName, str], None]


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


def validate(spec: RunSpec) -> RunSpec:
    """Fail before anything runs: unknown names, unevaluable benchmark, agent prerequisites,
    a network policy the sandbox cannot enforce. Returns the spec with its defaults fixed."""
    check_sweep_name(spec.sweep)
    template_path(MODELS.get(spec.base_model).template_family)
    data.check_evaluable(BENCHMARKS.get(spec.benchmark), spec.judge_model)  # before the budget
    agent = get_agent(spec.agent)
    if spec.api_provider is None and agent.provider is not None:
        spec = spec.model_copy(update={"api_provider": agent.provider})
    if spec.agent_model is None:
        spec = spec.model_copy(update={"agent_model": agent.default_model(spec.api_provider)})
    spec = agent_files.pin(spec, agent.takes_agent_dir)
    agent.check(spec)
    sandbox = get_sandbox(spec.sandbox)
    if spec.network is None:
        default = "allowlist" if sandbox.capabilities.network_policy else "open"
        spec = spec.model_copy(update={"network": default})
    if spec.network != "open" and not sandbox.capabilities.network_policy:
        raise ConfigError(
            f"sandbox {spec.sandbox!r} cannot restrict the network (--network {spec.network})",
            "use --sandbox bwrap, or --network open",
        )
    return spec


def check_inputs(spec: RunSpec, settings: Settings) -> RunSpec:
    """`validate`, and what would fail prepare for a reason no retry fixes (GPUs this machine
    lacks, an uncached base model or instruct twin): called before any folder is made."""
    spec = validate(spec)
    gpu.require_gpus(spec.gpus or [])
    MODELS.get(spec.base_model).locate(settings.models_dir)
    provenance.require_twin(MODELS.get(spec.base_model))
    return spec


def create_run(spec: RunSpec, settings: Settings) -> Path:
    spec = check_inputs(spec, settings)
    sweep_dir = settings.results_dir / spec.sweep
    ensure_writable(sweep_dir)
    run_dir = sweep_dir / spec.run_id
    run_dir.mkdir()
    try:
        agent_files.snapshot(spec, RunPaths(run_dir))
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    save_run(run_dir, RunRecord(spec=spec, harness=harness_info()))
    return run_dir


# --- stages -------------------------------------------------------------------------------------


def _eval_timeout(settings: Settings, benchmark: str, spec: RunSpec | None = None) -> float:
    """The run's own limit, else PTB_EVAL_TIMEOUT_S, else the benchmark's default."""
    if spec is not None and spec.eval_timeout_s is not None:
        return spec.eval_timeout_s
    return settings.eval_timeout_s or BENCHMARKS.get(benchmark).eval_timeout_s


def eval_options(spec: RunSpec) -> EvalOptions:
    return EvalOptions(
        backend=spec.eval_backend,
        judge_model=spec.judge_model,
        judge_base_url=spec.judge_base_url,
        seed=spec.seed,
        suite=spec.suite,
    )


def resolve_baseline(
    settings: Settings, spec: RunSpec, gpus: list[int] | None = None
) -> BaselineRef:
    """Published or cached base score of the run's suite; measured with the pristine evaluation
    (on `gpus`, see run_evaluation) when unknown."""
    model = MODELS.get(spec.base_model)
    key, cache = model.baseline_key, settings.baselines_dir
    known = baselines.lookup(cache, key, spec.benchmark, spec.suite)
    if known is not None:
        return known
    out = baselines.measured_eval_paths(cache, key, spec.benchmark, spec.suite)
    try:
        metrics = run_evaluation(
            model.locate(settings.models_dir), spec.benchmark, model.template_family, out,
            timeout_s=_eval_timeout(settings, spec.benchmark), grace_s=settings.grace_s,
            options=eval_options(spec), gpus=gpus,
        )  # fmt: skip
    except EvaluationError as exc:
        raise InfrastructureError(
            f"cannot measure the base score of {model.name} on {spec.benchmark}: {exc.message}",
            exc.hint,
        ) from exc
    return baselines.record_measured(settings.baselines_dir, model.baseline_key, metrics)


def _gpu_preflight(ctx: RunContext) -> GpuPreflight:
    """The run's GPUs (all that nvidia-smi lists when the spec names none), checked."""
    wanted = ctx.spec.gpus
    if wanted is None and os.environ.get(gpu.GPUS_VAR, "").strip():
        wanted = gpu.parse_gpu_list(os.environ[gpu.GPUS_VAR])  # given by a sweep's executor
    if wanted is None:
        wanted = [g.index for g in gpu.query_gpus()] if shutil.which("nvidia-smi") else []
    try:
        return gpu.preflight(wanted)
    except gpu.GpuPreflightError as exc:
        ctx.record.gpu_preflight = exc.result
        raise


def stage_prepare(ctx: RunContext) -> None:
    model = MODELS.get(ctx.spec.base_model)
    bench = BENCHMARKS.get(ctx.spec.benchmark)
    model_path = ctx.base_model_path()
    # Before the budget starts: GPUs that do not work and a base score that cannot be had are
    # infrastructure failures, never the agent's time.
    ctx.record.gpu_preflight = _gpu_preflight(ctx)
    ctx.record.baseline = resolve_baseline(
        ctx.settings, ctx.spec, ctx.record.gpu_preflight.requested
    )
    # The agent's CLI at its pinned version, its key and its relay, also before the budget.
    agent = get_agent(ctx.spec.agent)
    if agent.cli is not None:
        ctx.record.agent_cli = install.locate(ctx.spec.agent, agent.cli, ctx.settings)
    services.check_relay(ctx.spec)
    layout = get_sandbox(ctx.spec.sandbox).guest_layout(
        ctx.paths.workspace, model_path, ctx.paths.agent_home
    )
    prompt = builder.build_workspace(
        ctx.paths.workspace, ctx.spec, model, bench, Path(layout.model), ctx.settings.data_dir,
        hardware=builder.hardware_summary(ctx.record.gpu_preflight),
    )  # fmt: skip
    ctx.paths.prompt.write_text(prompt)
    write_json(
        ctx.paths.evaluator_manifest,
        manifest.snapshot(ctx.paths.workspace, builder.EVALUATOR_PATHS),
    )


def stage_collect(ctx: RunContext) -> None:
    # Verify before reading final_model that nothing of the agent is still alive to change it.
    if ctx.record.agent and ctx.record.agent.attempts:
        tokens = [a.token for a in ctx.record.agent.attempts]
        late = supervise.sweep(tokens, ctx.settings.grace_s)
        ctx.record.agent.attempts[-1].stragglers += late
    ctx.record.collect = collect.collect_final_model(
        ctx.paths.workspace_final_model,
        ctx.paths.final_model,
        workspace=ctx.paths.workspace,
        max_bytes=ctx.settings.collect_max_bytes,
        max_files=ctx.settings.collect_max_files,
    )
    frozen.freeze_run(ctx.paths)


def stage_integrity(ctx: RunContext) -> None:
    frozen.freeze_run(ctx.paths, missing_only=True)  # trees an older ptb did not freeze
    check_ctx = CheckContext(
        paths=ctx.paths,
        record=ctx.record,
        model=MODELS.get(ctx.spec.base_model),
        bench=BENCHMARKS.get(ctx.spec.benchmark),
        settings=ctx.settings,
        judge_model=ctx.judge_model or ctx.spec.judge_model,
        judge_base_url=ctx.judge_base_url or ctx.spec.judge_base_url,
    )
    checks = run_checks(check_ctx, lambda c: write_json(ctx.paths.check_file(c.name), c))
    verdict = policy.decide(checks)
    write_json(ctx.paths.verdict, verdict)
    ctx.record.verdict = verdict
    if ctx.record.review is not None and ctx.record.review.verdict_sha256 != review.digest(
        ctx.paths.verdict
    ):
        ctx.record.review = None  # it judged another verdict; the file stays as history


def stage_evaluate(ctx: RunContext) -> None:
    rec = ctx.record
    rec.metrics = rec.eval_error = None
    if rec.collect is None or rec.collect.status != "collected":
        return
    family = MODELS.get(ctx.spec.base_model).template_family
    try:
        changed = collect.verify_copy(ctx.paths.final_model, rec.collect)
        if changed:
            raise EvaluationError(
                f"final_model changed after collect: {', '.join(changed[:5])}",
                "something wrote into the run directory after the agent was stopped",
            )
        rec.metrics = run_evaluation(
            ctx.paths.final_model, ctx.spec.benchmark, family, ctx.paths.eval,
            timeout_s=_eval_timeout(ctx.settings, ctx.spec.benchmark, ctx.spec),
            grace_s=ctx.settings.grace_s, options=eval_options(ctx.spec), gpus=ctx.preflight_gpus(),
            tokenizer_dir=ctx.base_model_path(), collected=rec.collect,
        )  # fmt: skip
    except EvaluationError as exc:
        rec.eval_error = ErrorInfo(type="EvaluationError", message=exc.message, hint=exc.hint)


def stage_score(ctx: RunContext) -> None:
    rec = ctx.record
    if rec.baseline is None:  # a run prepared by an older ptb
        rec.baseline = resolve_baseline(ctx.settings, ctx.spec)
    base = rec.baseline.score
    kept = rec.review
    if kept is not None and not review.verifies(kept, ctx.spec, ctx.settings.cache_dir):
        rec.review = None  # signed elsewhere, for another run or spec, or edited: verdict stands
    if rec.collect is None or rec.collect.status != "collected":
        reason = rec.collect.reason if rec.collect else "nothing collected"
        rec.outcome = Outcome(
            score=base, source="fallback_no_model", base_score=base, reason=reason
        )
    elif policy.effective(rec.verdict, rec.review) == "flagged" and not (
        rec.metrics is None and rec.review is None and policy.only_undecided(rec.verdict)
    ):
        reason = "; ".join(rec.verdict.reasons if rec.verdict else []) or "flagged on review"
        rec.outcome = Outcome(score=base, source="fallback_flagged", base_score=base, reason=reason)
    elif rec.metrics is None:
        reason = rec.eval_error.message if rec.eval_error else "no metrics"
        rec.outcome = Outcome(
            score=base, source="fallback_eval_failed", base_score=base, reason=reason
        )
    else:
        rec.outcome = Outcome(score=rec.metrics.score, source="evaluated", base_score=base)
    if rec.review is not None:
        rec.outcome.reviewed = review.describe(rec.review)


STAGE_FUNCS: dict[StageName, Callable[[RunContext], None]] = {
    "prepare": stage_prepare,
    "solve": stage_solve,
    "collect": stage_collect,
    "integrity": stage_integrity,
    "evaluate": stage_evaluate,
    "score": stage_score,
}
if tuple(STAGE_FUNCS) != STAGES:
    raise RuntimeError("STAGE_FUNCS must list every stage, in order")


def _error_info(exc: BaseException) -> ErrorInfo:
    return ErrorInfo(
        type=type(exc).__name__,
        message=exc.message if isinstance(exc, PtbError) else str(exc) or type(exc).__name__,
        hint=exc.hint if isinstance(exc, PtbError) else None,
        traceback=None if isinstance(exc, PtbError) else traceback.format_exc(),
        # An interrupted harness (SIGINT/SIGTERM: a killed driver, a preempted job) resumes.
        retryable=isinstance(exc, HarnessInterrupted | KeyboardInterrupt)
        or (isinstance(exc, InfrastructureError) and exc.retryable),
    )


def load(run_dir: Path) -> RunRecord:
    if not RunPaths(run_dir).run_json.is_file():
        raise ResultsDirError(
            f"{run_dir} is not a run directory (no run.json)", "pass <results>/<sweep>/<run_id>"
        )
    return load_run(run_dir)


def execute(
    run_dir: Path,
    settings: Settings,
    on_stage: StageHook | None = None,
    until: StageName | None = None,
) -> RunRecord:
    """Run every stage that is not done yet (up to and including `until`), holding the run's lock.
    Raises after recording a stage failure."""
    paths = RunPaths(run_dir)
    load(run_dir)  # a clear error for a non-run before creating a lock file in it
    with RunLock(paths.lock):
        ctx = RunContext(paths=paths, record=load(run_dir), settings=settings)
        return _execute_stages(ctx, on_stage, until)


def rejudge(
    run_dir: Path,
    settings: Settings,
    judge_model: str | None = None,
    judge_base_url: str | None = None,
    on_stage: StageHook | None = None,
) -> RunRecord:
    """Re-run integrity (and the score it decides) on a finished run, never the agent."""
    paths = RunPaths(run_dir)
    record = load(run_dir)
    if record.stages["collect"].state != "done":
        raise ConfigError(
            f"run {record.spec.run_id} has not been collected yet",
            f"finish it first: ptb run --resume {run_dir}",
        )
    with RunLock(paths.lock):
        ctx = RunContext(paths, load(run_dir), settings, judge_model, judge_base_url)
        ctx.record.stages["integrity"] = StageStatus()
        return _rescore(ctx, on_stage, "integrity")


def record_review(
    run_dir: Path, settings: Settings, decision: Decision, why: str, who: str | None = None
) -> RunRecord:
    """Sign a person's decision over the run's verdict and re-score the run with it."""
    paths = RunPaths(run_dir)
    load(run_dir)
    with RunLock(paths.lock):
        ctx = RunContext(paths, load(run_dir), settings)
        if ctx.record.stages["integrity"].state != "done":
            raise ConfigError(
                f"run {ctx.spec.run_id} has no integrity verdict to review yet",
                f"finish it first: ptb run --resume {run_dir}",
            )
        signed = review.sign(paths.verdict, ctx.spec, decision, why, settings.cache_dir, who)
        write_json(paths.review, signed)
        ctx.record.review = signed
        return _rescore(ctx, None, None)


def _rescore(ctx: RunContext, on_stage: StageHook | None, until: StageName | None) -> RunRecord:
    """Run what is pending up to `until`, and score again when the run was evaluated (a run
    stopped early with --until stays stopped)."""
    if ctx.record.stages["evaluate"].state == "done":
        ctx.record.stages["score"] = StageStatus()
        until = "score"
    ctx.save()
    return _execute_stages(ctx, on_stage, until) if until else ctx.record


def _execute_stages(
    ctx: RunContext, on_stage: StageHook | None, until: StageName | None
) -> RunRecord:
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
        if name == until:
            break
    return ctx.record
