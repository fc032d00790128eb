"""The solve stage: the agent in its sandbox until its deadline, relaunched after a harness or
provider interruption, re-prompted when it stops early; every launch recorded as an attempt.
"""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import psutil

from posttrainbench.agents import AgentContext, agent_files, get_agent, install
from posttrainbench.agents import harness as agent_harness
from posttrainbench.agents.base import Agent, ApiAccess
from posttrainbench.agents.failure import is_infrastructure
from posttrainbench.errors import InfrastructureError, PtbError
from posttrainbench.records import AgentAttempt, AgentOutcome, RunSpec, now
from posttrainbench.run_context import RunContext
from posttrainbench.sandbox import (
    LaunchRequest,
    Sandbox,
    get_sandbox,
    gpu,
    guest,
    services,
    supervise,
)
from posttrainbench.sandbox.base import GUEST_USER, GuestLayout, Launched, Limits, Mount
from posttrainbench.sandbox.env import agent_environ
from posttrainbench.sandbox.logcap import CappedLog
from posttrainbench.sandbox.monitor import Monitor, last_sample_time
from posttrainbench.workspace import builder


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


def _reprompt_due(spec: RunSpec, outcome: AgentOutcome, deadline: datetime) -> bool:
    """A stopped agent gets another prompt: asked for, not used up, and enough time left."""
    last = outcome.attempts[-1]
    stopped = last.exit_reason in ("finished", "crashed") and (
        last.failure is None or last.failure.kind in ("cli_crash", "command_crash")
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


def _gpus(ctx: RunContext) -> list[int]:
    return ctx.preflight_gpus() or []


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
    env |= agent_files.env(spec, ctx.paths, sandbox.capabilities.isolation)
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
        *agent_files.mounts(ctx.spec, ctx.paths),
    ]


def _launch_prompt(ctx: RunContext, agent: Agent, outcome: AgentOutcome, deadline: datetime) -> str:
    task = ctx.paths.prompt.read_text()
    if not outcome.attempts:
        return task
    left = max(0.0, (deadline - now()).total_seconds())
    return agent_harness.reprompt(
        left, ctx.spec.budget_s, builder.PROMPT_FILE, None if agent.resumable else task
    )


@dataclass
class _Launch:
    """One launch of the agent, as the steps of `_launch_and_wait` hand it on."""

    ctx: RunContext
    outcome: AgentOutcome
    attempt: AgentAttempt
    deadline: datetime
    agent: Agent
    sandbox: Sandbox
    model_path: Path
    layout: GuestLayout
    prompt: str
    secrets: list[str]
    before: set[int]  # the harness's children before the launch: not the agent's


def _launch_and_wait(ctx: RunContext, outcome: AgentOutcome, deadline: datetime) -> None:
    run = _begin_attempt(ctx, outcome, deadline)
    paths, cap = ctx.paths, ctx.settings.agent_log_max_bytes
    with (
        services.start(ctx.paths, ctx.spec, run.sandbox, outcome) as svc,
        CappedLog(paths.agent_stdout, cap) as out,
        CappedLog(paths.agent_stderr, cap) as err,
    ):
        request, stdin = _launch_request(run, svc, out, err)
        launched = _start(run, request, stdin)
        out.close_writer()
        err.close_writer()
        monitor, finished = _wait(run, launched, request)
        _sweep_leftovers(ctx, run.sandbox, run.attempt, run.before)
        services.record(svc, paths, outcome)
    _end_attempt(run, finished, monitor, out, err)


def _begin_attempt(ctx: RunContext, outcome: AgentOutcome, deadline: datetime) -> _Launch:
    paths, spec = ctx.paths, ctx.spec
    builder.start_timer(paths.workspace, deadline.timestamp())
    base_model_path = ctx.base_model_path()
    sandbox = get_sandbox(spec.sandbox)
    paths.agent_home.mkdir(parents=True, exist_ok=True)
    layout = sandbox.guest_layout(paths.workspace, base_model_path, paths.agent_home)
    agent = get_agent(spec.agent)
    number = len(outcome.attempts)
    prompt = _launch_prompt(ctx, agent, outcome, deadline)
    # Recorded before the launch: a harness that dies right after Popen still leaves the token.
    attempt = AgentAttempt(started_at=now(), deadline=deadline, continuation=number)
    outcome.attempts.append(attempt)
    outcome.deadline = deadline
    ctx.save()
    supervise.become_subreaper()
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    secrets = agent_harness.secrets_of(os.environ)
    return _Launch(
        ctx, outcome, attempt, deadline, agent, sandbox, base_model_path, layout, prompt,
        secrets, before,
    )  # fmt: skip


def _launch_request(
    run: _Launch, svc: services.Services, out: CappedLog, err: CappedLog
) -> tuple[LaunchRequest, BinaryIO | None]:
    """The agent's command for this launch, its files placed, as a request to the sandbox."""
    ctx, agent, layout, number = run.ctx, run.agent, run.layout, run.attempt.continuation
    paths, spec = ctx.paths, ctx.spec
    cli = Path(ctx.record.agent_cli.path) if ctx.record.agent_cli else None
    api = None
    if svc.relay_url and svc.token and spec.api_provider:
        api = ApiAccess(spec.api_provider, svc.relay_url, svc.token)
        run.secrets.append(svc.token)
    launch = agent.launch(
        AgentContext(
            spec=spec,
            workspace=layout.workspace,
            base_model_path=layout.model,
            prompt=run.prompt,
            home=layout.home,
            api=api,
            cli=cli,
            continuation=number,
        )
    )
    agent_harness.place_files(paths.agent_home, launch.files)
    extra = list(launch.mounts)
    if cli is not None and agent.cli is not None:
        extra.append(install.prefix(agent.cli, ctx.settings))
    mounts = _mounts(ctx, run.sandbox, run.model_path, layout, extra)
    paths.agent_input(number).write_text(run.prompt)
    stdin = agent_harness.stdin_of(run.prompt) if launch.stdin_prompt else None
    request = LaunchRequest(
        argv=launch.argv,
        workdir=paths.workspace,
        env=_agent_env(ctx, run.sandbox, layout, run.attempt.token, svc.env | launch.env),
        stdout=out.write_fd,
        stderr=err.write_fd,
        run_id=spec.run_id,
        mounts=mounts,
        bridges=svc.bridges,
        network=spec.network or "none",
        gpus=_gpus(ctx),
        limits=_limits(spec),
        image=spec.image,
        home=paths.agent_home if run.sandbox.capabilities.isolation else None,
        tmp=_scratch(paths.agent_tmp) if run.sandbox.capabilities.isolation else None,
        var_tmp=_scratch(paths.agent_var_tmp) if run.sandbox.capabilities.isolation else None,
        stdin=stdin.fileno() if stdin else None,
    )
    return request, stdin


def _scratch(folder: Path) -> Path:
    """A run-directory folder bound as the sandbox's /tmp or /var/tmp (sticky, world-writable
    as those are), kept across launches so the frozen copy holds what the agent left there."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o1777)
    return folder


def _start(run: _Launch, request: LaunchRequest, stdin: BinaryIO | None) -> Launched:
    """The sandbox launches the agent; a launch that fails closes the attempt as crashed."""
    attempt, outcome = run.attempt, run.outcome
    try:
        return run.sandbox.launch(request)
    except (OSError, PtbError) as exc:
        attempt.ended_at, attempt.exit_reason = now(), "crashed"
        attempt.note = f"launch failed: {exc}"
        outcome.exit_reason = "crashed"
        run.ctx.save()
        if isinstance(exc, PtbError):
            raise
        raise InfrastructureError(
            f"cannot launch the agent: {exc}", f"check the {run.ctx.spec.agent!r} agent's command"
        ) from exc
    finally:
        if stdin is not None:
            stdin.close()


def _wait(
    run: _Launch, launched: Launched, request: LaunchRequest
) -> tuple[Monitor, supervise.Finished]:
    """Watch the agent until it exits or its deadline passes. A harness interrupted meanwhile
    stops what the agent left running and closes the attempt as killed."""
    ctx, attempt, outcome = run.ctx, run.attempt, run.outcome
    paths, settings, proc = ctx.paths, ctx.settings, launched.proc
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
            scratch=tuple(p for p in (request.tmp, request.var_tmp) if p is not None),
        ) as monitor:  # fmt: skip
            finished = supervise.wait(proc, run.deadline.timestamp(), settings.grace_s)
    except BaseException:
        with supervise.shielded():
            _sweep_leftovers(ctx, run.sandbox, attempt, run.before)
            attempt.ended_at, attempt.exit_reason = now(), "killed"
            attempt.note, attempt.harness_interrupted = "harness interrupted", True
            outcome.exit_reason = "killed"
            _account(outcome)
            ctx.save()
        raise
    return monitor, finished


def _end_attempt(
    run: _Launch, finished: supervise.Finished, monitor: Monitor, out: CappedLog, err: CappedLog
) -> None:
    """How the attempt ended, why its CLI stopped; its logs redacted, its trajectory written."""
    ctx, attempt, outcome = run.ctx, run.attempt, run.outcome
    paths = ctx.paths
    attempt.stdout, attempt.stderr = out.stats, err.stats
    attempt.ended_at = now()
    attempt.exit_code, attempt.signal = finished.exit_code, finished.signal
    attempt.exit_reason = outcome.exit_reason = finished.exit_reason
    if monitor.over_limit is not None:
        attempt.exit_reason = outcome.exit_reason = "over_limit"
        attempt.note = monitor.over_limit
    agent_harness.redact_logs(paths, run.secrets)  # first: a failure quotes stderr's tail
    if attempt.exit_reason in ("finished", "crashed"):
        attempt.failure = agent_harness.failure_of(
            run.agent, paths, attempt.started_at, attempt.exit_code
        )
    agent_harness.write_trajectory(run.agent, paths, ctx.record, run.secrets)


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
