"""Where a sweep stands: its suite, every planned run's state (queued, running with its stage and
time left, done with its score, failed with the reason; its suite where runs differ), GPU-hours
used and still ahead, and the LLM dollars spent so far — read from the runs' records, so it works
while the sweep runs."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path

from pydantic import Field, ValidationError
from rich.table import Table
from rich.text import Text

from posttrainbench.records import STAGES, Record, RunRecord, Usd, format_duration, now
from posttrainbench.results.layout import RunPaths
from posttrainbench.scale.driver import load_plan, read_tries, run_state

StatusName = str  # queued | running | evaluating | done | failed | retrying | interrupted


class RunStatus(Record):
    run_id: str
    agent: str
    base_model: str
    benchmark: str
    seed: int
    suite: str | None = Field(default=None, description="The suite the run follows.")
    status: StatusName
    stage: str | None = None
    detail: str | None = Field(default=None, description="Time left, score, or why it failed.")
    jobs: int = Field(default=0, description="Jobs an executor ran for it.")
    gpu_hours: float = 0.0
    gpu_hours_left: float = 0.0
    cost_usd: Usd = Decimal(0)


class SweepStatus(Record):
    sweep: str
    suite: str = Field(description="The sweep's suite (its file's).")
    runs: list[RunStatus]

    @property
    def other_suites(self) -> bool:
        """Whether some run follows another suite than the sweep's (shown per run then)."""
        return any(r.suite not in (None, self.suite) for r in self.runs)

    @property
    def counts(self) -> Counter[str]:
        return Counter(r.status for r in self.runs)


def _gpus(record: RunRecord, per_run: int) -> int:
    if record.gpu_preflight is not None:
        return len(record.gpu_preflight.requested)
    return per_run


def run_status(run_dir: Path, per_run_gpus: int, jobs: int) -> RunStatus | None:
    try:
        record = RunRecord.model_validate_json(RunPaths(run_dir).run_json.read_text())
    except (OSError, ValidationError):
        return None
    spec = record.spec
    state, why = run_state(run_dir)
    gpus = _gpus(record, per_run_gpus)
    agent = record.agent
    used_s = agent.wall_s or sum(a.ran_s for a in agent.attempts) if agent else 0.0
    stage = next((s for s in STAGES if record.stages[s].state == "running"), None)
    status: StatusName = {"pending": "queued", "retryable": "retrying"}.get(state, state)
    detail = why
    left_s = float(spec.budget_s) - used_s
    if state == "running":
        status = "evaluating" if stage in ("evaluate", "score") else "running"
        if agent is not None and stage == "solve":
            left_s = max(0.0, (agent.deadline - now()).total_seconds())
            detail = f"{format_duration(int(left_s))} left"
    if state == "done" and record.outcome is not None:
        detail = f"{100 * record.outcome.score:.1f} ({record.outcome.source})"
    ahead = 0.0 if state in ("done", "failed") else max(0.0, left_s)
    return RunStatus(
        run_id=spec.run_id, agent=spec.agent_config.label(), base_model=spec.base_model,
        benchmark=spec.benchmark, seed=spec.seed, suite=spec.suite, status=status, stage=stage,
        detail=detail, jobs=jobs, gpu_hours=round(gpus * used_s / 3600, 4),
        gpu_hours_left=round(gpus * ahead / 3600, 4),
        cost_usd=agent.api_usage.cost_usd if agent and agent.api_usage else Decimal(0),
    )  # fmt: skip


def sweep_status(sweep_dir: Path) -> SweepStatus:
    plan = load_plan(sweep_dir)
    jobs = Counter(t.run_id for t in read_tries(sweep_dir))
    per_run = plan.spec.executor.gpus_per_run
    runs = []
    for rid in plan.run_ids:
        found = run_status(sweep_dir / rid, per_run, jobs[rid])
        if found is None:
            found = RunStatus(
                run_id=rid, agent="?", base_model="?", benchmark="?", seed=-1, status="missing",
                detail="no readable run.json",
            )  # fmt: skip
        runs.append(found)
    return SweepStatus(sweep=plan.spec.name, suite=plan.spec.suite, runs=runs)


STYLE = {"done": "green", "failed": "red", "running": "cyan", "evaluating": "cyan",
         "retrying": "yellow", "interrupted": "yellow", "missing": "red"}  # fmt: skip


def render(status: SweepStatus) -> Table:
    counts = ", ".join(f"{n} {s}" for s, n in sorted(status.counts.items()))
    used = sum(r.gpu_hours for r in status.runs)
    ahead = sum(r.gpu_hours_left for r in status.runs)
    cost = sum((r.cost_usd for r in status.runs), Decimal(0))
    table = Table(
        title=f"sweep {status.sweep}, suite {status.suite}: {len(status.runs)} runs ({counts})",
        caption=f"GPU-hours used {used:.2f}, at most {ahead:.2f} ahead; LLM ${cost:.2f}",
    )
    per_run = status.other_suites
    columns = ("run", "agent", "base model", "benchmark", "seed", *(("suite",) if per_run else ()),
               "state", "detail", "jobs")  # fmt: skip
    for column in columns:
        table.add_column(column)
    for r in status.runs:
        table.add_row(
            r.run_id, r.agent, r.base_model, r.benchmark, str(r.seed),
            *((r.suite or "?",) if per_run else ()),
            Text(r.status + (f" ({r.stage})" if r.stage else ""), style=STYLE.get(r.status, "")),
            r.detail or "", str(r.jobs),
        )  # fmt: skip
    return table
