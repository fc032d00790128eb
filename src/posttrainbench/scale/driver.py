"""Running a sweep: create every run directory up front, hand the runs that still need work to
the executor, and retry what failed for reasons outside the agent.

The sweep directory holds `sweep.json` (the file's contents and its expansion: the run ids) and
`.jobs/tries.jsonl` (one line per job an executor ran: which run, which try, the engine's id, how
it ended). Every decision is read back from the runs' own `run.json`, so running the same sweep
file again — after a crash of this driver, a lost node, a preempted job — carries on where things
stand: finished runs are kept, unfinished ones resume at their first unfinished stage, missing
ones start, and a run still held by a live harness is waited for, never started twice.

Retried: a run whose harness failed with a retryable infrastructure error (GPU preflight, a
provider outage, an unreachable provider), was interrupted (130/143), or was lost by the engine;
up to `executor.retries` times. Never retried: a failure that is not retryable (a configuration
error), and anything the agent did — its crash or its empty final_model is a finished run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from posttrainbench.catalog.suites import V1_0
from posttrainbench.config import Settings
from posttrainbench.errors import ConfigError, ResultsDirError
from posttrainbench.records import (
    STAGES,
    Record,
    RunRecord,
    RunSpec,
    StageName,
    Versioned,
    migration,
    now,
)
from posttrainbench.results.layout import RunPaths, check_sweep_name
from posttrainbench.results.lock import is_held
from posttrainbench.results.store import ensure_writable, load_run, write_json
from posttrainbench.scale.executors import EXECUTORS, get_executor
from posttrainbench.scale.executors.base import Job
from posttrainbench.scale.sweep import SweepSpec

log = logging.getLogger(__name__)
EVAL_ALLOWANCE_S = 4 * 3600  # the longest default evaluation timeout of a benchmark
LOCK_POLL_S = 5.0

RunState = Literal["pending", "running", "done", "failed", "retryable", "interrupted"]


class SweepPlan(Versioned):
    """sweep.json: the sweep file's settings and the run ids they expand to."""

    spec: SweepSpec
    run_ids: list[str]
    written_at: datetime = Field(default_factory=now)


@migration("SweepPlan", 3)
def _sweep_plan_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v3 sweeps predate suites; their runs followed ptb-v1.0 (as RunSpec migrates)."""
    spec = data.get("spec")
    return {**data, "spec": {"suite": V1_0.id, **spec}} if isinstance(spec, dict) else data


class JobTry(Record):
    """One job an executor ran for a run (a line of .jobs/tries.jsonl)."""

    run_id: str
    attempt: int = Field(description="1 for the first job of this run in this sweep, then 2 …")
    executor: str
    engine_id: str | None = None
    node: str | None = None
    started_at: datetime
    ended_at: datetime
    returncode: int | None
    state: RunState = Field(description="The run's state read back from run.json afterwards.")
    note: str | None = None


def plan_path(sweep_dir: Path) -> Path:
    return sweep_dir / "sweep.json"


def tries_path(sweep_dir: Path) -> Path:
    return sweep_dir / ".jobs" / "tries.jsonl"


def read_tries(sweep_dir: Path) -> list[JobTry]:
    try:
        lines = tries_path(sweep_dir).read_text().splitlines()
    except FileNotFoundError:
        return []
    tries = []
    for line in lines:
        try:
            tries.append(JobTry.model_validate_json(line))
        except ValidationError:
            continue
    return tries


def _append_try(sweep_dir: Path, entry: JobTry) -> None:
    path = tries_path(sweep_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(entry.model_dump_json() + "\n")


def materialize(spec: SweepSpec, settings: Settings) -> tuple[Path, list[RunSpec]]:
    """The sweep directory with every run directory created (validated, never overwritten)."""
    from posttrainbench.runner import check_inputs, create_run

    check_sweep_name(spec.name)
    sweep_dir = settings.results_dir / spec.name
    runs = spec.expand()  # first: a sandbox that cannot isolate refuses before any folder exists
    for run in runs:  # an uncached model or a missing benchmark: refused before any folder too
        if not (sweep_dir / run.run_id).exists():
            check_inputs(run, settings)
    ensure_writable(sweep_dir)
    write_json(plan_path(sweep_dir), SweepPlan(spec=spec, run_ids=[r.run_id for r in runs]))
    for run in runs:
        if not (sweep_dir / run.run_id).exists():
            create_run(run, settings)
    return sweep_dir, runs


def run_state(run_dir: Path, until: StageName | None = None) -> tuple[RunState, str | None]:
    """Where a run stands, from its run.json and its lock; `done` once every stage through
    `until` (default: the last) is done."""
    if is_held(RunPaths(run_dir).lock):
        return "running", None
    try:
        record = RunRecord.model_validate_json(RunPaths(run_dir).run_json.read_text())
    except (OSError, ValidationError) as exc:
        return "failed", f"unreadable run.json: {exc}".splitlines()[0]
    wanted = STAGES[: STAGES.index(until) + 1] if until else STAGES
    if all(record.stages[s].state == "done" for s in wanted):
        return "done", None
    stage = record.failed_stage
    if stage is not None:
        error = record.stages[stage].error
        why = f"{stage}: {error.message}" if error else stage
        return ("retryable" if error is not None and error.retryable else "failed"), why
    states = [record.stages[s].state for s in STAGES]
    n_done = next((i for i, s in enumerate(states) if s != "done"), len(states))
    if n_done and all(s == "pending" for s in states[n_done:]):  # e.g. `--until collect`
        return "interrupted", f"stopped after {STAGES[n_done - 1]}"
    if any(s != "pending" for s in states):
        return "interrupted", "stopped mid-run"
    return "pending", None


def refused_gpus(run_dir: Path) -> list[int]:
    """The GPUs the run's last GPU preflight refused, if that is why its prepare stage failed."""
    try:
        record = load_run(run_dir)
    except ResultsDirError:
        return []
    error = record.stages["prepare"].error
    preflight = record.gpu_preflight
    if error is None or error.type != "GpuPreflightError" or preflight is None:
        return []
    return [c.index for c in preflight.checks if not c.passed]


NEEDS_WORK: frozenset[RunState] = frozenset({"pending", "retryable", "interrupted"})


def time_limit(run: RunSpec, margin_s: int) -> int:
    """What an engine should allow one run: agent budget + evaluation + margin."""
    return run.budget_s + (run.eval_timeout_s or EVAL_ALLOWANCE_S) + margin_s


Event = Callable[[str], None]


def run_sweep(
    spec: SweepSpec,
    settings: Settings,
    on_event: Event | None = None,
    retry_delay_s: float = 0,
    until: StageName | None = None,
    retry_failed: bool = False,
) -> dict[str, tuple[RunState, str | None]]:
    """Run the sweep until every run is done (or has done `until`) or cannot be helped; the final
    state per run. A run whose GPU the preflight refused is retried away from that GPU where the
    executor places runs itself (`Executor.avoid_gpus`). A failed run (a failure no retry
    fixes by itself) is tried once more only with `retry_failed`, after its cause was fixed."""
    say = on_event or (lambda _msg: None)
    EXECUTORS.get(spec.executor.kind).check_config(spec.executor)  # before any folder exists
    sweep_dir, runs = materialize(spec, settings)
    say(f"sweep {spec.name}: {sweep_dir}")
    executor = get_executor(spec.executor, sweep_dir)
    checked = False
    attempts = {t.run_id: t.attempt for t in read_tries(sweep_dir)}  # numbering goes on
    jobs_now: dict[str, int] = {}  # jobs per run in this invocation: bounded by the retries
    limit = spec.executor.retries + 1
    budgets = {r.run_id: r for r in runs}
    while True:
        states = {r.run_id: run_state(sweep_dir / r.run_id, until) for r in runs}
        running = [rid for rid, (s, _) in states.items() if s == "running"]
        todo = [
            rid
            for rid, (s, _) in states.items()
            if (s in NEEDS_WORK and jobs_now.get(rid, 0) < limit)
            or (retry_failed and s == "failed" and rid not in jobs_now)
        ]
        if not todo and not running:
            return states
        if not todo:  # a harness from an earlier driver still holds a run: wait for it
            say(f"waiting for {len(running)} run(s) held by another harness")
            time.sleep(LOCK_POLL_S)
            continue
        jobs = [
            Job(
                run_id=rid,
                run_dir=sweep_dir / rid,
                gpus=spec.executor.gpus_per_run,
                time_limit_s=time_limit(budgets[rid], spec.executor.time_margin_s),
                until=until,
            )
            for rid in todo
        ]
        if not checked:
            executor.prepare(jobs)
            executor.check()
            checked = True
        say(f"{spec.executor.kind}: {len(jobs)} run(s) to do, {len(running)} held elsewhere")
        started = now()
        ended = executor.run(jobs)
        try:
            for finished in ended:
                rid = finished.job.run_id
                state, why = run_state(finished.job.run_dir, until)
                if state == "retryable" and (refused := refused_gpus(finished.job.run_dir)):
                    executor.avoid_gpus(refused, why or "refused by the GPU preflight")
                jobs_now[rid] = jobs_now.get(rid, 0) + 1
                attempts[rid] = attempts.get(rid, 0) + 1
                entry = JobTry(
                    run_id=rid, attempt=attempts[rid], executor=spec.executor.kind,
                    engine_id=finished.engine_id, node=finished.node, started_at=started,
                    ended_at=now(), returncode=finished.returncode, state=state,
                    note=finished.note or why,
                )  # fmt: skip
                _append_try(sweep_dir, entry)
                say(f"{rid}: {state}" + (f" ({entry.note})" if entry.note else ""))
        finally:  # an early exit stops the executor's running jobs now, not at collection
            close = getattr(ended, "close", None)
            if close is not None:
                close()
        if retry_delay_s:
            time.sleep(retry_delay_s)


def load_plan(sweep_dir: Path) -> SweepPlan:
    try:
        return SweepPlan.model_validate_json(plan_path(sweep_dir).read_text())
    except (FileNotFoundError, NotADirectoryError):
        what = "is a file, not a sweep folder" if sweep_dir.is_file() else "holds no sweep.json"
        raise ResultsDirError(
            f"{sweep_dir} {what}", "give the folder `ptb sweep run` made: <results>/<sweep name>"
        ) from None
    except OSError as exc:
        raise ResultsDirError(f"cannot read {plan_path(sweep_dir)}: {exc.strerror}") from None
    except ValidationError as exc:
        message = f"{plan_path(sweep_dir)} is not a sweep plan: {exc}".splitlines()[0]
        raise ConfigError(message) from None
