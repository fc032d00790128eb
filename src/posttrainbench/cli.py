"""The `ptb` command line: parses options, calls the runner/report modules, renders with rich.

User errors (PtbError) print as one line with a hint and exit 2; nothing here holds logic that a
library user would need.
"""

from __future__ import annotations

import logging
import signal
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from posttrainbench import runner
from posttrainbench.catalog import AGENTS, BENCHMARKS, MODELS
from posttrainbench.config import Settings, load_settings
from posttrainbench.errors import ConfigError, PtbError
from posttrainbench.progress import StageProgress
from posttrainbench.records import RunRecord, RunSpec, format_duration, new_run_id, parse_duration
from posttrainbench.report import build_leaderboard
from posttrainbench.report.tables import RENDERERS, to_rich
from posttrainbench.results.store import ensure_writable
from posttrainbench.sandbox import SANDBOXES
from posttrainbench.scale.sweep import EXECUTORS, AgentEntry, SweepSpec

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
console = Console(stderr=True)
out = Console(soft_wrap=True)

ResultsOpt = Annotated[
    Path | None,
    typer.Option("--results", help="Results root (default: $PTB_RESULTS or ./results)."),
]


class ListKind(StrEnum):
    models = "models"
    benchmarks = "benchmarks"
    agents = "agents"
    sandboxes = "sandboxes"


class ReportFormat(StrEnum):
    md = "md"
    csv = "csv"
    json = "json"


def _execute(run_dir: Path, settings: Settings) -> RunRecord:
    spec = runner.load(run_dir).spec
    label = f"{spec.agent}·{spec.base_model.rsplit('/', 1)[-1]}·{spec.benchmark}"
    console.print(f"run [bold]{spec.run_id}[/] → {run_dir}")
    with StageProgress(console, label, spec.budget_s) as progress:
        record = runner.execute(run_dir, settings, on_stage=progress)
    _summarise(record)
    return record


def _summarise(record: RunRecord) -> None:
    agent = record.agent
    outcome = record.outcome
    if agent:
        console.print(f"  agent: {agent.exit_reason} after {format_duration(agent.wall_s or 0)}")
    if record.collect:
        reason = f" ({record.collect.reason})" if record.collect.reason else ""
        console.print(f"  final_model: {record.collect.status}{reason}")
    if record.verdict:
        reasons = escape("; ".join(record.verdict.reasons))
        console.print(f"  integrity: {record.verdict.decision} {reasons}")
    if outcome:
        why = f" — {outcome.reason}" if outcome.reason else ""
        console.print(f"  score: {100 * outcome.score:.1f} ({outcome.source}){escape(why)}")


def _run_spec(spec: RunSpec, settings: Settings) -> Path:
    run_dir = runner.create_run(spec, settings)
    _execute(run_dir, settings)
    return run_dir


@app.command()
def run(
    agent: Annotated[str | None, typer.Option(help="Agent name (ptb list agents).")] = None,
    base_model: Annotated[str | None, typer.Option(help="Base model (ptb list models).")] = None,
    benchmark: Annotated[
        str | None, typer.Option(help="Benchmark id (ptb list benchmarks).")
    ] = None,
    budget: Annotated[str, typer.Option(help="Agent wall-clock budget: 10h, 15m, 20s.")] = "10h",
    agent_cmd: Annotated[str | None, typer.Option(help="Command for --agent command.")] = None,
    agent_model: Annotated[str | None, typer.Option(help="LLM behind the agent.")] = None,
    sandbox: Annotated[str, typer.Option(help="Sandbox backend.")] = "host",
    seed: int = 0,
    sweep: Annotated[str, typer.Option(help="Group folder under the results root.")] = "adhoc",
    results: ResultsOpt = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue this run dir from its first unfinished stage.")
    ] = None,
) -> None:
    """Run one agent on one base model and benchmark, end to end."""
    settings = load_settings(results)
    if resume is not None:
        _execute(resume.resolve(), settings)
        return
    missing = [n for n, v in (("--agent", agent), ("--base-model", base_model),
                              ("--benchmark", benchmark)) if not v]  # fmt: skip
    if missing:
        raise ConfigError(f"missing {', '.join(missing)}", "or pass --resume RUN_DIR")
    assert agent and base_model and benchmark
    try:
        budget_s = parse_duration(budget)
    except ValueError as exc:
        raise ConfigError(f"--budget: {exc}", "e.g. --budget 10h or --budget 15m") from None
    spec = RunSpec(
        run_id=new_run_id(agent, base_model, benchmark),
        sweep=sweep,
        agent=AGENTS.get(agent).name,
        agent_model=agent_model,
        agent_cmd=agent_cmd,
        base_model=MODELS.get(base_model).name,
        benchmark=BENCHMARKS.get(benchmark).id,
        budget_s=budget_s,
        sandbox=sandbox,
        seed=seed,
    )
    _run_spec(spec, settings)


@app.command()
def demo(
    results: ResultsOpt = None,
    minutes: Annotated[float, typer.Option(help="Budget of each agent, in minutes.")] = 6.0,
) -> None:
    """Run noop and recipe on ptb-tiny × arith, all offline, and print the leaderboard."""
    settings = load_settings(results)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    sweep = SweepSpec(
        name=f"demo-{stamp}",
        agents=[AgentEntry(agent="noop"), AgentEntry(agent="recipe")],
        base_models=["ptb-tiny"],
        benchmarks=["arith"],
        budget_s=max(1, round(minutes * 60)),
    )
    ensure_writable(settings.results_dir / sweep.name)
    with console.status("building the embedded base model ptb-tiny (first time only)"):
        path = MODELS.get("ptb-tiny").locate(settings.models_dir)
    console.print(f"base model ptb-tiny: {path}")
    EXECUTORS.get("local")(sweep.expand(), settings, _run_spec)
    board = build_leaderboard(settings.results_dir / sweep.name)
    out.print(to_rich(board))
    out.print(f"results: {settings.results_dir / sweep.name}")


@app.command()
def report(
    directory: Annotated[Path, typer.Argument(help="A results dir (any depth of runs).")],
    format: Annotated[ReportFormat, typer.Option("--format", "-f")] = ReportFormat.md,
) -> None:
    """Aggregate run records under DIRECTORY into the weighted leaderboard."""
    out.print(RENDERERS[format.value](build_leaderboard(directory)), end="", markup=False)


@app.command("list")
def list_(kind: Annotated[ListKind, typer.Argument()]) -> None:
    """List the registered models, benchmarks, agents or sandboxes."""
    if kind is ListKind.models:
        for name, m in MODELS:
            out.print(f"{name:32} {m.display_name:22} instruct: {m.instruct or '—'}", markup=False)
    elif kind is ListKind.benchmarks:
        for name, b in BENCHMARKS:
            state = "evaluable" if b.evaluable else "not yet evaluable"
            out.print(f"{name:18} {b.display_name:20} {state}", markup=False)
    elif kind is ListKind.agents:
        for name, a in AGENTS:
            out.print(f"{name:10} {a.description}", markup=False)
    else:
        for name, cls in SANDBOXES:
            out.print(f"{name:10} {cls.capabilities}", markup=False)


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the runner records the interruption and stops the agent


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console)]
    )
    signal.signal(signal.SIGTERM, _sigterm)
    try:
        app(standalone_mode=False)
    except PtbError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (KeyboardInterrupt, click.Abort):
        console.print("[red]interrupted[/]; run.json records where (continue with --resume)")
        sys.exit(130)
