"""Renders one run record for the terminal (`ptb show RUN_DIR`): spec, stages, agent attempts,
collected files, integrity, evaluation and the final score with its source.

Every field a record may lack (a run that stopped early, an older schema) is simply left out.
Values are rich `Text`, never markup, so names and messages print exactly as recorded. A run
whose sandbox does not isolate (`host`) is marked UNISOLATED next to its sandbox.
"""

from __future__ import annotations

import signal
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from posttrainbench.integrity.review import describe as review_line
from posttrainbench.records import (
    STAGES,
    AgentAttempt,
    AgentOutcome,
    CollectOutcome,
    ErrorInfo,
    EvalMetrics,
    JudgeUsage,
    LogStats,
    RunRecord,
    format_duration,
)
from posttrainbench.sandbox import isolates

Row = tuple[str, str | Text | None]

_STATE_STYLE = {"done": "green", "failed": "bold red", "running": "yellow", "pending": "dim"}


def _when(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if moment else None


def _secs(seconds: float | None) -> str | None:
    return None if seconds is None else format_duration(seconds)


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _pct(score: float) -> str:
    return f"{100 * score:.1f}"


def _error(err: ErrorInfo) -> str:
    message = err.message
    if err.type == "HarnessInterrupted" and message.isdigit():  # recorded as the bare signum
        message = f"interrupted by {_signal_name(int(message))}"
    text = f"{err.type}: {message}"
    return f"{text} (hint: {err.hint})" if err.hint else text


def _section(title: str, rows: Iterable[Row]) -> Table:
    """A titled two-column block of label → value; rows whose value is None are left out."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.title, grid.title_justify, grid.title_style = title, "left", "bold underline"
    for label, value in rows:
        if value is not None and value != "":
            grid.add_row(Text(label), value if isinstance(value, Text) else Text(value))
    return grid


def _sandbox(name: str) -> str | Text:
    if isolates(name) is not False:
        return name
    return Text(f"{name} — UNISOLATED: the agent could read and write whatever the harness could",
                style="bold red")  # fmt: skip


def _agent_dir(path: str | None, sha256: str | None) -> str | None:
    """The snapshot's origin and content hash (the snapshot itself is agent/files/)."""
    return f"{path} (sha256 {sha256}; snapshot in agent/files/)" if path else None


def _spec(record: RunRecord, run_dir: Path) -> Table:
    spec = record.spec
    harness = record.harness
    return _section(
        f"run {spec.run_id}",
        [
            ("directory", str(run_dir)),
            ("sweep", spec.sweep),
            ("agent", spec.agent),
            ("agent model", spec.agent_model),
            ("agent name", spec.agent_name),
            ("agent cmd", spec.agent_cmd),
            ("agent dir", _agent_dir(spec.agent_dir, spec.agent_dir_sha256)),
            ("base model", spec.base_model),
            ("benchmark", spec.benchmark),
            ("suite", spec.suite),
            ("budget", format_duration(spec.budget_s)),
            ("sandbox", _sandbox(spec.sandbox)),
            ("seed", str(spec.seed)),
            ("resume policy", spec.resume_policy),
            ("eval timeout", _secs(spec.eval_timeout_s)),
            ("pass env", ", ".join(spec.pass_env) or None),
            ("created", _when(spec.created_at)),
            ("harness", f"ptb {harness.version}, python {harness.python} on {harness.hostname}"),
        ],
    )


def _stages(record: RunRecord) -> list[RenderableType]:
    table = Table(title="stages", title_justify="left", title_style="bold underline")
    for name in ("stage", "state", "started", "duration"):
        table.add_column(name, no_wrap=True)
    errors: list[RenderableType] = []
    for name in STAGES:
        status = record.stages.get(name)
        if status is None:
            continue
        table.add_row(
            Text(name),
            Text(status.state, style=_STATE_STYLE.get(status.state, "")),
            Text(_when(status.started_at) or "—"),
            Text(_secs(status.duration_s) or "—"),
        )
        if status.error is not None:
            errors.append(Text(f"{name} {status.state}: {_error(status.error)}", style="red"))
    return [table, *errors]


def _log(stats: LogStats | None) -> str | None:
    if stats is None:
        return None
    dropped = f", {_bytes(stats.dropped_bytes)} dropped past the cap" if stats.dropped_bytes else ""
    return f"{_bytes(stats.kept_bytes)} kept{dropped}"


def _exit(attempt: AgentAttempt) -> str | None:
    parts = []
    if attempt.exit_code is not None:
        parts.append(f"code {attempt.exit_code}")
    if attempt.signal is not None:
        parts.append(f"signal {attempt.signal}")
    return ", ".join(parts) or None


def _attempt(i: int, attempt: AgentAttempt) -> Table:
    rows: list[Row] = [
        ("pid", str(attempt.pid) if attempt.pid is not None else None),
        ("started", _when(attempt.started_at)),
        ("ended", _when(attempt.ended_at) or "— (still running, or the harness died)"),
        ("ran", _secs(attempt.ran_s) if attempt.ended_at else None),
        ("launch", f"re-prompt {attempt.continuation}" if attempt.continuation else None),
        ("exit reason", attempt.exit_reason),
        ("exit", _exit(attempt)),
        (
            "failure",
            f"{attempt.failure.kind}{' (retryable)' if attempt.failure.retryable else ''}: "
            f"{attempt.failure.message}"
            if attempt.failure
            else None,
        ),
        ("stderr tail", "\n".join(attempt.failure.stderr_tail) if attempt.failure else None),
        ("harness", "interrupted while this attempt ran" if attempt.harness_interrupted else None),
        # The runner's note often says the same as the harness row: do not say it twice.
        ("note", None if attempt.note == "harness interrupted" else attempt.note),
        ("stdout log", _log(attempt.stdout)),
        ("stderr log", _log(attempt.stderr)),
    ]
    for proc in attempt.stragglers:
        what = proc.cmdline or proc.name or "?"
        rows.append(("straggler killed", f"pid {proc.pid} ({proc.found_by}): {what}"))
    return _section(f"attempt {i}", rows)


def _llm(agent: AgentOutcome) -> str | None:
    u = agent.api_usage
    if u is None:
        return None
    return (
        f"{u.calls} ({u.failed_calls} failed, {u.refused_calls} refused): {u.input_tokens:,} in "
        f"({u.cached_tokens:,} cached), {u.output_tokens:,} out, ${u.cost_usd:.4f}"
    )


def _own_evaluations(agent: AgentOutcome) -> str | None:
    """The agent's evaluate.py calls the scoring service scored: how many, and the last."""
    if not agent.evaluations:
        return None
    last = agent.evaluations[-1]
    result = last.error or (f"{_pct(last.score)}" if last.score is not None else "no score")
    cost = sum(e.judge_cost_usd or 0.0 for e in agent.evaluations)
    judged = f", judge ${cost:.4f}" if cost else ""
    return f"{len(agent.evaluations)} (last: {last.split}, {last.n_items} items, {result}{judged})"


def _agent(agent: AgentOutcome) -> list[RenderableType]:
    ended = [a for a in agent.attempts if a.ended_at is not None]
    summary = _section(
        "agent",
        [
            ("exit reason", agent.exit_reason or "—"),
            ("time used", _secs(agent.wall_s) or _secs(sum(a.ran_s for a in ended))),
            ("downtime", _secs(agent.downtime_s)),
            ("budget", _secs(agent.budget_s)),
            ("resume policy", agent.resume_policy),
            ("started", _when(agent.started_at)),
            ("deadline", _when(agent.deadline)),
            ("attempts", str(len(agent.attempts))),
            ("re-prompts", str(agent.reprompts) if agent.reprompts else None),
            ("LLM calls", _llm(agent)),
            ("CLI's report", agent.usage_check),
            ("own evaluations", _own_evaluations(agent)),
        ],
    )
    parts: list[RenderableType] = [summary]
    for i, attempt in enumerate(agent.attempts, 1):
        parts += [Text(""), _attempt(i, attempt)]
    return parts


def _collect(collect: CollectOutcome) -> list[RenderableType]:
    rows: list[Row] = [
        ("status", collect.status),
        ("reason", collect.reason),
        ("files", f"{len(collect.files)} ({_bytes(collect.total_bytes)})"),
    ]
    for skipped in collect.skipped:
        rows.append(("skipped", f"{skipped.path}: {skipped.reason}"))
    return [_section("final_model", rows)]


def render_run(record: RunRecord, run_dir: Path) -> RenderableType:
    """Everything run.json says about one run, as a group of rich tables."""
    parts: list[RenderableType] = [_spec(record, run_dir), Text(""), *_stages(record)]
    if record.agent is not None:
        parts += [Text(""), *_agent(record.agent)]
    if record.collect is not None:
        parts += [Text(""), *_collect(record.collect)]
    if record.verdict is not None:
        verdict = record.verdict
        style = "green" if verdict.decision == "clean" else "bold red"
        rows: list[Row] = [("decision", Text(verdict.decision, style=style))]
        rows += [("reason", reason) for reason in verdict.reasons]
        rows.append(("checks", ", ".join(verdict.checks) or None))
        if verdict.errored:
            rows.append(("errored", ", ".join(verdict.errored) + " (failed closed)"))
        if verdict.skipped:
            rows.append(("skipped", ", ".join(verdict.skipped)))
        if record.review is not None:
            rows.append(("review", review_line(record.review)))
        parts += [Text(""), _section("integrity", rows)]
    evaluation: list[Row] = []
    if record.baseline is not None:
        base = record.baseline
        detail = f" — {base.detail}" if base.detail else ""
        evaluation.append(("baseline", f"{_pct(base.score)} ({base.source}){detail}"))
    if record.metrics is not None:
        m = record.metrics
        evaluation += [
            ("score", f"{_pct(m.score)} ({m.metric} on {m.benchmark} {m.split})"),
            ("samples", f"{m.n_samples}" + (f" ({m.n_failed} failed)" if m.n_failed else "")),
            ("how", _how(m)),
            ("judge", _judge(m.judge) if m.judge else None),
            ("duration", _secs(m.duration_s)),
        ]
    if record.eval_error is not None:
        evaluation.append(("error", Text(_error(record.eval_error), style="red")))
    if evaluation:
        parts += [Text(""), _section("evaluation", evaluation)]
    if record.outcome is not None:
        o = record.outcome
        style = "bold green" if o.source == "evaluated" else "bold yellow"
        rows = [
            ("score", Text(f"{_pct(o.score)} ({o.source})", style=style)),
            ("reason", o.reason),
            ("base score", _pct(o.base_score) if o.base_score is not None else None),
        ]
        parts += [Text(""), _section("outcome", rows)]
    else:
        failed = record.failed_stage
        state = f"stopped: {failed} failed" if failed else "no outcome yet"
        resume = f" — continue with: ptb run --resume {run_dir}"
        parts += [Text(""), Text(state + resume, style="yellow")]
    return Group(*parts)


def _how(m: EvalMetrics) -> str:
    step = f", ladder step {m.ladder_step} of {len(m.attempts)} attempt(s)" if m.attempts else ""
    family = m.template_family or "model's own"
    seeds = (
        f", mean of {len([x for x in m.seeds if x.score is not None])} seeds"
        if len(m.seeds) > 1
        else ""
    )
    sampling = (
        f", {'greedy' if m.sampling.greedy else f'temperature {m.sampling.temperature:g}'}"
        if m.sampling
        else ""
    )
    return (
        f"{m.backend}, template {family}, max_tokens {m.max_tokens}{step}, seed {m.seed}"
        f"{seeds}{sampling}"
    )


def _judge(j: JudgeUsage) -> str:
    cost = f", ${j.cost_usd:.4f}" if j.cost_usd is not None else ""
    return f"{j.model}: {j.calls} calls ({j.cached} cached, {j.failed} failed){cost}"
