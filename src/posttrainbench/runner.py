"""The stage machine of one run: prepare → solve → collect → integrity → evaluate → score.

Each stage reads from and writes to the run directory and records its state in run.json, which
is saved atomically on every transition. A stage that is `done` is never redone; `resume` starts
at the first stage that is not. The agent's failure and evaluation failure are data (recorded,
and the score falls back to the base model's); a failure of the harness in any stage stops the
run with run.json saying where and why.
Nothing here knows a backend: agents, sandboxes and benchmarks come from their registries.
"""

from __future__ import annotations

import itertools
import logging
import os
import platform
import shutil
import socket
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath

import psutil

from posttrainbench import __version__
from posttrainbench.agents import AgentContext, get_agent, install
from posttrainbench.agents import harness as agent_harness
from posttrainbench.agents.base import Agent, ApiAccess
from posttrainbench.agents.failure import is_infrastructure
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
from posttrainbench.integrity import frozen, manifest, policy, review
from posttrainbench.integrity.base import CheckContext, run_checks
from posttrainbench.records import (
    STAGES,
    AgentAttempt,
    AgentOutcome,
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
from posttrainbench.sandbox import (
    LaunchRequest,
    Sandbox,
    get_sandbox,
    gpu,
    guest,
    services,
    supervise,
)
from posttrainbench.sandbox.base import GUEST_USER, GuestLayout, Limits, Mount
from posttrainbench.sandbox.env import agent_environ
from posttrainbench.sandbox.logcap import CappedLog
from posttrainbench.sandbox.monitor import Monitor, last_sample_time
from posttrainbench.workspace import builder, collect

log = logging.getLogger(__name__)
KEY_PACKAGES = ("torch", "transformers", "peft", "trl", "inspect-ai", "pydantic")
StageHook = Callable[[StageName, str], None]


@dataclass
class RunContext:
    paths: RunPaths
    record: RunRecord
    settings: Settings
    judge_model: str | None = None  # `ptb judge --judge-model`: overrides the spec's
    judge_base_url: str | None = None

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


def validate(spec: RunSpec) -> RunSpec:
    """Fail before anything runs: unknown names, unevaluable benchmark, agent prerequisites,
    a network policy the sandbox cannot enforce. Returns the spec with its defaults fixed."""
    check_sweep_name(spec.sweep)
    template_path(MODELS.get(spec.base_model).template_family)
    bench = BENCHMARKS.get(spec.benchmark)
    bench.implementation()
    data.check_cached(bench.sources, bench.id)  # before the budget starts, not at evaluation
    if BENCHMARKS.get(spec.benchmark).judged and not spec.judge_model:
        raise ConfigError(
            f"{spec.benchmark} is scored by an LLM judge and no --judge-model was given",
            "pass --judge-model openai/gpt-5-mini (the published judge), or any inspect model",
        )
    agent = get_agent(spec.agent)
    if spec.api_provider is None and agent.provider is not None:
        spec = spec.model_copy(update={"api_provider": agent.provider})
    if spec.agent_model is None:
        spec = spec.model_copy(update={"agent_model": agent.default_model(spec.api_provider)})
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


def create_run(spec: RunSpec, settings: Settings) -> Path:
    spec = validate(spec)
    sweep_dir = settings.results_dir / spec.sweep
    ensure_writable(sweep_dir)
    run_dir = sweep_dir / spec.run_id
    run_dir.mkdir()
    save_run(run_dir, RunRecord(spec=spec, harness=harness_info()))
    return run_dir


# --- stages -------------------------------------------------------------------------------------


def _base_model_path(ctx: RunContext) -> Path:
    return MODELS.get(ctx.spec.base_model).locate(ctx.settings.models_dir)


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
    """Published or cached base score; measured with the pristine evaluation (on `gpus`, see
    run_evaluation) when unknown."""
    model = MODELS.get(spec.base_model)
    known = baselines.lookup(settings.baselines_dir, model.baseline_key, spec.benchmark)
    if known is not None:
        return known
    out = baselines.measured_eval_paths(settings.baselines_dir, model.baseline_key, spec.benchmark)
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
    model_path = _base_model_path(ctx)
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


def _close_interrupted(ctx: RunContext, outcome: AgentOutcome) -> None:
    """Attempts a dead harness left open: stop what still runs and close them truthfully."""
    for attempt in outcome.attempts:
        if attempt.ended_at is not None:
            continue
        alive = supervise.reap_orphan(attempt.pid, attempt.proc_create_time, ctx.settings.grace_s)
        attempt.stragglers += supervise.sweep([attempt.token], ctx.settings.grace_s)
        if attempt.sandbox_id:
            get_sandbox(ctx.spec.sandbox).stop(attempt.sandbox_id, ctx.settings.grace_s)
        if alive:
            attempt.ended_at = now()
            attempt.note = "harness interrupted; the agent ran on until resume, then was killed"
        else:
            last = last_sample_time(ctx.paths.monitor_csv)
            attempt.ended_at = max(last, attempt.started_at) if last else attempt.started_at
            attempt.note = (
                "harness interrupted; agent gone on resume (end time: last monitor sample)"
                if attempt.pid is not None
                else "harness interrupted while launching the agent"
            )
        attempt.exit_reason, attempt.harness_interrupted = "killed", True
        outcome.exit_reason = "killed"


def next_deadline(outcome: AgentOutcome, at: datetime) -> datetime:
    """The deadline of a launch at `at` under the run's resume policy."""
    budget = timedelta(seconds=outcome.budget_s or 0)
    if not outcome.attempts or outcome.resume_policy == "deadline":
        return outcome.started_at + budget
    used = timedelta(seconds=sum(a.ran_s for a in outcome.attempts))
    return at + max(budget - used, timedelta(0))


def _account(outcome: AgentOutcome) -> None:
    runs = outcome.attempts
    outcome.wall_s = round(sum(a.ran_s for a in runs), 2)
    gaps = (
        (b.started_at - a.ended_at).total_seconds()
        for a, b in itertools.pairwise(runs)
        if a.ended_at is not None
    )
    outcome.downtime_s = round(sum(max(0.0, g) for g in gaps), 2)


def stage_solve(ctx: RunContext) -> None:
    rec, spec = ctx.record, ctx.spec
    if rec.agent is None:
        started = now()
        rec.agent = AgentOutcome(
            started_at=started,
            deadline=started + timedelta(seconds=spec.budget_s),
            budget_s=spec.budget_s,
            resume_policy=spec.resume_policy,
        )
    outcome = rec.agent
    _close_interrupted(ctx, outcome)
    ctx.save()
    # Relaunch an agent that the harness or its provider cut short, and re-prompt one that
    # stopped early when asked to, only while its time lasts.
    while True:
        last = outcome.attempts[-1] if outcome.attempts else None
        started = now()
        deadline = next_deadline(outcome, started)
        relaunch = last is None or last.harness_interrupted or is_infrastructure(last.failure)
        if not relaunch and _reprompt_due(spec, outcome, deadline):
            outcome.reprompts += 1
        elif not relaunch or deadline <= started:
            break
        _launch_and_wait(ctx, outcome, deadline)
        ctx.save()
        failed = outcome.attempts[-1].failure
        if failed is not None and is_infrastructure(failed):
            _close_solve(ctx)
            raise InfrastructureError(
                f"the agent stopped because of its provider: {failed.kind} ({failed.message})",
                "the run is not scored; retry it later with: ptb run --resume <run dir>",
                retryable=failed.retryable,
            )
    _close_solve(ctx)


def _reprompt_due(spec: RunSpec, outcome: AgentOutcome, deadline: datetime) -> bool:
    """A stopped agent gets another prompt: asked for, not used up, and enough time left."""
    last = outcome.attempts[-1]
    stopped = last.exit_reason in ("finished", "crashed") and (
        last.failure is None or last.failure.kind == "cli_crash"
    )
    left = (deadline - now()).total_seconds()
    return outcome.reprompts < spec.continue_prompts and stopped and left >= spec.continue_min_s


def _limits(spec: RunSpec) -> Limits:
    gb = 2**30
    lim = spec.limits
    return Limits(
        memory_bytes=int(lim.memory_gb * gb) if lim.memory_gb else None,
        processes=lim.processes,
        open_files=lim.open_files,
        file_bytes=int(lim.workspace_gb * gb) if lim.workspace_gb else None,
    )


def _eval_gpus(ctx: RunContext) -> list[int] | None:
    """The GPUs the run was given: those its preflight checked (none for a CPU-only run); None
    for a record without a preflight (written before there was one)."""
    return ctx.record.gpu_preflight.requested if ctx.record.gpu_preflight else None


def _gpus(ctx: RunContext) -> list[int]:
    return _eval_gpus(ctx) or []


def _agent_env(
    ctx: RunContext, sandbox: Sandbox, layout: GuestLayout, token: str, extra: dict[str, str]
) -> dict[str, str]:
    spec = ctx.spec
    host_env = agent_environ(os.environ, spec.pass_env)
    env = host_env | {
        # The agent environment: the harness's own Python (with the ML stack) comes first; an
        # isolating sandbox mounts it at the same path.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), host_env.get("PATH", "")]),
        "HOME": str(layout.home),
        "TMPDIR": "/tmp",
        "PTB_PROMPT_FILE": str(layout.workspace / builder.PROMPT_FILE),
        "PTB_BASE_MODEL_PATH": str(layout.model),
        "PTB_DATA_DIR": str(layout.workspace / "data"),
        "PTB_IN_SANDBOX": spec.sandbox,
        "PYTHONUNBUFFERED": "1",
    }
    if sandbox.capabilities.isolation:  # the harness's own name means nothing inside
        env |= {"USER": GUEST_USER, "LOGNAME": GUEST_USER}
    gpus = _gpus(ctx)
    if gpus or sandbox.capabilities.isolation:
        env |= gpu.visible_gpus(gpus)
    return env | extra | {supervise.TOKEN_VAR: token}


def _mounts(
    ctx: RunContext, sandbox: Sandbox, model_path: Path, layout: GuestLayout, extra: list[Path]
) -> list[Mount]:
    if not sandbox.capabilities.isolation:
        return []
    settings = ctx.settings
    protected = [settings.results_dir, settings.cache_dir, Path.home(), ctx.paths.root]
    return [
        *guest.etc_mounts(),
        *guest.python_mounts(protected),
        *guest.hidden_item_packages(settings.cache_dir / "empty"),
        *guest.model_mounts(model_path, layout.model),
        *(Mount(path, PurePosixPath(path)) for path in extra),
    ]


def _launch_prompt(ctx: RunContext, agent: Agent, outcome: AgentOutcome, deadline: datetime) -> str:
    task = ctx.paths.prompt.read_text()
    if not outcome.attempts:
        return task
    left = max(0.0, (deadline - now()).total_seconds())
    return agent_harness.reprompt(
        left, ctx.spec.budget_s, builder.PROMPT_FILE, None if agent.resumable else task
    )


def _launch_and_wait(ctx: RunContext, outcome: AgentOutcome, deadline: datetime) -> None:
    paths, spec, settings = ctx.paths, ctx.spec, ctx.settings
    builder.start_timer(paths.workspace, deadline.timestamp())
    base_model_path = _base_model_path(ctx)
    sandbox = get_sandbox(spec.sandbox)
    paths.agent_home.mkdir(parents=True, exist_ok=True)
    layout = sandbox.guest_layout(paths.workspace, base_model_path, paths.agent_home)
    agent = get_agent(spec.agent)
    cli = Path(ctx.record.agent_cli.path) if ctx.record.agent_cli else None
    number = len(outcome.attempts)
    prompt = _launch_prompt(ctx, agent, outcome, deadline)
    # Recorded before the launch: a harness that dies right after Popen still leaves the token.
    attempt = AgentAttempt(started_at=now(), deadline=deadline, continuation=number)
    outcome.attempts.append(attempt)
    outcome.deadline = deadline
    ctx.save()
    supervise.become_subreaper()
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    cap = settings.agent_log_max_bytes
    secrets = agent_harness.secrets_of(os.environ)
    with (
        services.start(ctx.paths, spec, sandbox, outcome) as svc,
        CappedLog(paths.agent_stdout, cap) as out,
        CappedLog(paths.agent_stderr, cap) as err,
    ):
        api = None
        if svc.relay_url and svc.token and spec.api_provider:
            api = ApiAccess(spec.api_provider, svc.relay_url, svc.token)
            secrets.append(svc.token)
        launch = agent.launch(
            AgentContext(
                spec=spec,
                workspace=layout.workspace,
                base_model_path=layout.model,
                prompt=prompt,
                home=layout.home,
                api=api,
                cli=cli,
                continuation=number,
            )
        )
        agent_harness.place_files(paths.agent_home, launch.files)
        extra = list(launch.mounts)
        if cli is not None and agent.cli is not None:
            extra.append(install.prefix(agent.cli, settings))
        mounts = _mounts(ctx, sandbox, base_model_path, layout, extra)
        paths.agent_input(number).write_text(prompt)
        stdin = agent_harness.stdin_of(prompt) if launch.stdin_prompt else None
        request = LaunchRequest(
            argv=launch.argv,
            workdir=paths.workspace,
            env=_agent_env(ctx, sandbox, layout, attempt.token, svc.env | launch.env),
            stdout=out.write_fd,
            stderr=err.write_fd,
            run_id=spec.run_id,
            mounts=mounts,
            bridges=svc.bridges,
            network=spec.network or "none",
            gpus=_gpus(ctx),
            limits=_limits(spec),
            image=spec.image,
            home=paths.agent_home if sandbox.capabilities.isolation else None,
            stdin=stdin.fileno() if stdin else None,
        )
        try:
            launched = sandbox.launch(request)
        except (OSError, PtbError) as exc:
            attempt.ended_at, attempt.exit_reason = now(), "crashed"
            attempt.note = f"launch failed: {exc}"
            outcome.exit_reason = "crashed"
            ctx.save()
            if isinstance(exc, PtbError):
                raise
            raise InfrastructureError(
                f"cannot launch the agent: {exc}", f"check the {spec.agent!r} agent's command"
            ) from exc
        finally:
            if stdin is not None:
                stdin.close()
        out.close_writer()
        err.close_writer()
        proc = launched.proc
        try:
            attempt.pid, attempt.proc_create_time = proc.pid, supervise.create_time(proc.pid)
            attempt.sandbox_id = launched.sandbox_id
            attempt.limits_enforced = launched.limits_enforced
            attempt.limits_not_enforced = launched.limits_not_enforced
            ctx.save()
            with Monitor(
                proc.pid, paths.workspace, paths.monitor_csv, settings.monitor_s,
                gpus=request.gpus, workspace_limit=request.limits.file_bytes,  # --workspace-gb
                home=paths.agent_home,  # HOME counts against the same bound
            ) as monitor:  # fmt: skip
                finished = supervise.wait(proc, deadline.timestamp(), settings.grace_s)
        except BaseException:
            with supervise.shielded():
                _sweep_leftovers(ctx, sandbox, attempt, before)
                attempt.ended_at, attempt.exit_reason = now(), "killed"
                attempt.note, attempt.harness_interrupted = "harness interrupted", True
                outcome.exit_reason = "killed"
                _account(outcome)
                ctx.save()
            raise
        _sweep_leftovers(ctx, sandbox, attempt, before)
        services.record(svc, paths, outcome)
    attempt.stdout, attempt.stderr = out.stats, err.stats
    attempt.ended_at = now()
    attempt.exit_code, attempt.signal = finished.exit_code, finished.signal
    attempt.exit_reason = outcome.exit_reason = finished.exit_reason
    if monitor.over_limit is not None:
        attempt.exit_reason = outcome.exit_reason = "over_limit"
        attempt.note = monitor.over_limit
    if attempt.exit_reason in ("finished", "crashed"):
        attempt.failure = agent_harness.failure_of(paths, attempt.started_at, attempt.exit_code)
    agent_harness.redact_logs(paths, secrets)
    agent_harness.write_trajectory(agent, paths, ctx.record, secrets)


def _sweep_leftovers(
    ctx: RunContext, sandbox: Sandbox, attempt: AgentAttempt, before: set[int]
) -> None:
    """Kill orphans re-parented to the harness and every carrier of the attempt's token, and
    release what the sandbox holds."""
    adopted = supervise.adopted_since(attempt.started_at.timestamp(), before)
    attempt.stragglers += supervise.sweep([attempt.token], ctx.settings.grace_s, adopted=adopted)
    if attempt.sandbox_id:
        sandbox.stop(attempt.sandbox_id, ctx.settings.grace_s)


def _close_solve(ctx: RunContext) -> None:
    outcome = ctx.record.agent
    if outcome is None:
        return
    _account(outcome)
    if outcome.exit_reason is None and outcome.attempts:
        outcome.exit_reason = outcome.attempts[-1].exit_reason


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
    frozen.freeze(ctx.paths.workspace, ctx.paths.frozen_workspace)


def stage_integrity(ctx: RunContext) -> None:
    if not frozen.manifest_path(ctx.paths.frozen_workspace).is_file():  # collected by an older ptb
        frozen.freeze(ctx.paths.workspace, ctx.paths.frozen_workspace)
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
            grace_s=ctx.settings.grace_s, options=eval_options(ctx.spec), gpus=_eval_gpus(ctx),
            tokenizer_dir=_base_model_path(ctx), collected=rec.collect,
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
