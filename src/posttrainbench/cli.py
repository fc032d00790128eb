"""The `ptb` command line: parses options, calls the runner/report modules, renders with rich.

Errors the user can cause print as one line `error: … (hint: …)` on stderr, never a traceback:
PtbError exits with its own code (2 for usage/config), usage errors of the parser (typer's
vendored click) exit 2. SIGINT and SIGTERM raise HarnessInterrupted: the runner records where
the run stopped, and the CLI exits 128 + signal number (130, 143) saying how to resume. Nothing
here holds logic that a library user would need.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import signal
import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from posttrainbench import (
    __version__,
    cli_eval,
    cli_integrity,
    cli_published,
    cli_site,
    offline,
    runner,
)
from posttrainbench.catalog import AGENTS, BENCHMARKS, MODELS
from posttrainbench.catalog.suites import DEFAULT_SUITE, SUITES, suite_for_run
from posttrainbench.catalog.suites import suite as suite_by_name
from posttrainbench.config import Settings, load_settings
from posttrainbench.embedded.demo_summary import gain_line
from posttrainbench.errors import ConfigError, HarnessInterrupted, PtbError
from posttrainbench.plain_errors import plain
from posttrainbench.progress import StageProgress
from posttrainbench.records import (
    AGENT_NAME_PATTERN,
    MAX_BUDGET_S,
    STAGES,
    RunRecord,
    RunSpec,
    SandboxLimits,
    StageName,
    format_duration,
    new_run_id,
    parse_duration,
)
from posttrainbench.report import build_leaderboard
from posttrainbench.report.run_view import render_run
from posttrainbench.report.tables import RENDERERS, to_rich
from posttrainbench.results.layout import check_sweep_name
from posttrainbench.results.store import ensure_writable
from posttrainbench.sandbox import SANDBOXES, default_sandbox, default_sandbox_reason
from posttrainbench.sandbox.egress import parse_allow_host
from posttrainbench.sandbox.gpu import parse_gpu_list
from posttrainbench.scale.sweep import IN_PROCESS, AgentEntry, SweepSpec, bare_number

APP_HELP = """\
PostTrainBench: how well can an LLM agent post-train a base LLM on its own?

Each run hands an agent a base model, a benchmark, a time budget and a sandbox; the agent
leaves final_model/, and ptb checks its integrity, evaluates it with its own pristine code
and records everything in <results>/<sweep>/<run_id>/run.json.

Start with `ptb demo` (offline, no GPU, no API key) or `ptb list agents`.
"""

APP_EPILOG = """\
\b
Examples:
  ptb demo                                          # the whole loop on the embedded tiny model
  ptb list models
  ptb run --agent recipe --base-model ptb-tiny --benchmark arith --budget 5m
  ptb show results/adhoc/<run_id>
  ptb report results/

\b
Exit codes: 0 done, 1 run failed (harness or evaluation), 2 usage or config error,
130/143 interrupted (continue with ptb run --resume RUN_DIR).
"""

RUN_EPILOG = """\
\b
Examples:
  ptb run --agent recipe --base-model ptb-tiny --benchmark arith --budget 5m
  ptb run --agent command --agent-dir ./my_agent --agent-cmd "python /agent/my_agent.py" \\
          --agent-name my-agent --base-model ptb-tiny --benchmark arith --budget 2h
  ptb run --resume results/adhoc/<run_id>      # after a crash, Ctrl-C or kill
"""

REPORT_EPILOG = """\
\b
Examples:
  ptb report results/                       # every run below results/, as markdown
  ptb report results/my-sweep --format csv > leaderboard.csv
  ptb report results/ --ci                  # 95% bootstrap intervals over seeds and items
  ptb report results/ --compare claude codex  # paired difference on the cells both ran
  ptb report results/ --with-published      # the published agents next to yours
"""

SHOW_EPILOG = """\
\b
Examples:
  ptb show results/adhoc/<run_id>
  ptb show results/adhoc/<run_id> --json | jq .outcome
"""

DEMO_EPILOG = """\
\b
Examples:
  ptb demo                        # 6 minutes per agent, results in ./results/demo-<time>/
  ptb demo --minutes 2 --results /tmp/ptb-demo
"""

app = typer.Typer(
    name="ptb",
    add_completion=False,
    no_args_is_help=True,
    help=APP_HELP,
    epilog=APP_EPILOG,
    rich_markup_mode=None,
)
log = logging.getLogger(__name__)
console = Console(stderr=True)
out = Console(soft_wrap=True)

# The run directory a run is executing in right now, for the message on an interruption.
current_run_dir: Path | None = None
_interrupted_by: int | None = None

ResultsOpt = Annotated[
    Path | None,
    typer.Option(
        "--results",
        metavar="DIR",
        help="Root folder of all run directories (default: $PTB_RESULTS or ./results).",
    ),
]


SuiteOpt = Annotated[
    str | None,
    typer.Option(
        "--suite",
        metavar="ID",
        help="Protocol version: ptb-v1.2 (default: six benchmarks, several seeds) or ptb-v1.0 "
        "(the paper's seven); see: ptb list suites.",
    ),
]


class ListKind(StrEnum):
    models = "models"
    benchmarks = "benchmarks"
    agents = "agents"
    sandboxes = "sandboxes"
    suites = "suites"


class ReportFormat(StrEnum):
    md = "md"
    csv = "csv"
    json = "json"


class NetworkOpt(StrEnum):
    none = "none"
    allowlist = "allowlist"
    open = "open"


class ProviderOpt(StrEnum):
    anthropic = "anthropic"
    openai = "openai"
    gemini = "gemini"


class ResumePolicyOpt(StrEnum):
    remaining = "remaining"
    deadline = "deadline"


StageOpt = StrEnum("StageOpt", {name: name for name in STAGES})  # type: ignore[misc]


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _version(value: bool) -> None:
    if value:
        out.print(f"ptb {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print ptb's version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    pass


def _execute(run_dir: Path, settings: Settings, until: StageName | None = None) -> RunRecord:
    global current_run_dir
    spec = runner.load(run_dir).spec
    current_run_dir = run_dir
    label = f"{spec.agent}·{spec.base_model.rsplit('/', 1)[-1]}·{spec.benchmark}"
    console.print(f"run [bold]{escape(spec.run_id)}[/] → {escape(str(run_dir))}", soft_wrap=True)
    with StageProgress(console, label, spec.budget_s) as progress:
        record = runner.execute(run_dir, settings, on_stage=progress, until=until)
    current_run_dir = None  # only once the run ended normally: an interruption names it
    _summarise(record)
    return record


def _resume(run_dir: Path, settings: Settings, until: StageName | None) -> None:
    """Continue a run; one that has nothing left to do says so and exits 0, as the sweep jobs
    that resume every run of a sweep expect."""
    record = runner.load(run_dir)
    wanted = STAGES[: STAGES.index(until) + 1] if until else STAGES
    if all(record.stages[s].state == "done" for s in wanted):
        score = f"; score {100 * record.outcome.score:.1f}" if record.outcome else ""
        done = f"done through {until}" if until else "finished"
        console.print(
            f"run {record.spec.run_id} is already {done}{score}: nothing to resume "
            f"(see: ptb show {run_dir})",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        return
    _execute(run_dir, settings, until)


def _summarise(record: RunRecord) -> None:
    agent = record.agent
    outcome = record.outcome
    if agent:
        console.print(f"  agent: {agent.exit_reason} after {format_duration(agent.wall_s or 0)}")
        failure = agent.attempts[-1].failure if agent.attempts else None
        if failure is not None:
            console.print(f"  failure: {failure.kind}: {failure.message}", markup=False)
            if failure.stderr_tail:
                console.print(f"  stderr (last {len(failure.stderr_tail)} lines):", markup=False)
                for line in failure.stderr_tail:
                    console.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
        if agent.reprompts:
            console.print(f"  re-prompted: {agent.reprompts}x")
        if agent.api_usage:
            u = agent.api_usage
            check = f"; CLI report: {agent.usage_check}" if agent.usage_check else ""
            console.print(
                f"  LLM: {u.calls} calls, {u.input_tokens:,} in ({u.cached_tokens:,} cached) / "
                f"{u.output_tokens:,} out tokens, ${u.cost_usd:.4f}{escape(check)}"
            )
            if u.provider_tool_calls or u.priced_at_max_calls:
                console.print(
                    f"  LLM: {u.provider_tool_calls} calls asked for provider-side tools, "
                    f"{u.priced_at_max_calls} cut before their usage (charged their most)"
                )
    if record.collect:
        reason = f" ({record.collect.reason})" if record.collect.reason else ""
        console.print(f"  final_model: {record.collect.status}{escape(reason)}")
    if record.verdict:
        reasons = escape("; ".join(record.verdict.reasons))
        console.print(f"  integrity: {record.verdict.decision} {reasons}")
    if outcome:
        why = f" — {outcome.reason}" if outcome.reason else ""
        console.print(f"  score: {100 * outcome.score:.1f} ({outcome.source}){escape(why)}")


def _run_spec(spec: RunSpec, settings: Settings, until: StageName | None = None) -> Path:
    run_dir = runner.create_run(spec, settings)
    _execute(run_dir, settings, until)
    return run_dir


def _duration(option: str, text: str, example: str) -> int:
    if bare_number(text):
        n = text.strip()
        raise ConfigError(
            f"{option} {n}: a duration needs its unit", f"write {n}m, {n}h or {n}s (or 1h30m)"
        )
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}", f"e.g. {option} {example}") from None


def _agent_name(name: str | None) -> str | None:
    if name is not None and not re.match(AGENT_NAME_PATTERN, name):
        raise ConfigError(
            f"--agent-name {name!r} is not a usable label",
            "use up to 64 letters, digits and . _ @ + : - (starting with a letter or digit)",
        )
    return name


def _pass_env(names: list[str]) -> list[str]:
    for name in names:
        if not _ENV_NAME.fullmatch(name):
            raise ConfigError(
                f"--pass-env {name!r} is not an environment variable name",
                "pass the name only, e.g. --pass-env WANDB_MODE (its value is read from here)",
            )
        if name not in os.environ:
            log.warning("--pass-env %s: not set here, so the agent will not get it", name)
    return list(dict.fromkeys(names))


@app.command(epilog=RUN_EPILOG)
def run(
    agent: Annotated[
        str | None, typer.Option(metavar="NAME", help="Agent to run (see: ptb list agents).")
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Base model to post-train (see: ptb list models)."),
    ] = None,
    benchmark: Annotated[
        str | None,
        typer.Option(metavar="ID", help="Benchmark to post-train for (see: ptb list benchmarks)."),
    ] = None,
    budget: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="Wall-clock time the agent gets, e.g. 10h, 15m, 1h30m, 90s. At most 7 days "
            "unless --allow-long.",
        ),
    ] = "10h",
    agent_cmd: Annotated[
        str | None,
        typer.Option(
            metavar="CMD",
            help="Shell command that is the agent, for --agent command; runs with bash in the "
            "run's workspace/ (its working directory). Its script is checked before the run "
            "starts.",
        ),
    ] = None,
    agent_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Your agent's files, for --agent command: copied into the run (hashed) and "
            "shown read-only at /agent in the sandbox ($PTB_AGENT_DIR in every sandbox).",
        ),
    ] = None,
    agent_name: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Label of this configuration in reports and on the board (default: the "
            "agent's name).",
        ),
    ] = None,
    agent_model: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL",
            help="LLM behind the agent, e.g. claude-sonnet-4-5, gpt-5, gemini-2.5-pro "
            "(default: the agent's own).",
        ),
    ] = None,
    agent_effort: Annotated[
        str | None,
        typer.Option(
            metavar="LEVEL",
            help="Reasoning effort of the agent's model, in the CLI's terms (e.g. low, medium, "
            "high).",
        ),
    ] = None,
    continue_prompts: Annotated[
        int,
        typer.Option(
            metavar="N",
            min=0,
            help="Re-prompt an agent that stops before its budget, up to N times, telling it the "
            "time left (continuing its conversation where the CLI can).",
        ),
    ] = 0,
    continue_min: Annotated[
        str,
        typer.Option(
            metavar="DURATION", help="Re-prompt only while at least this much time is left."
        ),
    ] = "10m",
    sandbox: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Sandbox backend: bwrap, docker, podman, apptainer or host (see: ptb doctor). "
            "Default: bwrap; where it cannot isolate here, the run is refused (pass host "
            "knowingly: no isolation).",
        ),
    ] = None,
    network: Annotated[
        NetworkOpt | None,
        typer.Option(
            help="Egress: none (loopback only), allowlist (HF hub, PyPI, GitHub and --allow-host, "
            "through a logging proxy) or open (anywhere, logged). Default: allowlist where the "
            "sandbox can enforce it, else open.",
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            metavar="HOST",
            help="Allow this host too under --network allowlist, e.g. wandb.ai, *.example.org, "
            "host:8443 (repeatable).",
        ),
    ] = None,
    api_provider: Annotated[
        ProviderOpt | None,
        typer.Option(
            help="The LLM provider the agent may call through the key-free relay (agent CLIs "
            "set their own). The real key stays in this process's environment.",
        ),
    ] = None,
    api_budget_usd: Annotated[
        float | None,
        typer.Option(metavar="USD", help="Dollar budget of the run's LLM calls (relay)."),
    ] = None,
    allow_provider_tools: Annotated[
        bool,
        typer.Option(
            help="Let the relay forward provider-side tools (web search and fetch, code "
            "execution, MCP); by default it strips them from requests and logs the attempt.",
        ),
    ] = False,
    gpus: Annotated[
        str | None,
        typer.Option(
            metavar="LIST",
            help="GPUs the run gets, e.g. 0 or 0,1 or none (default: every GPU found). They are "
            "checked before the budget starts.",
        ),
    ] = None,
    memory_gb: Annotated[
        float | None,
        typer.Option(
            metavar="GB", help="Memory limit of the sandbox (where a cgroup is available)."
        ),
    ] = None,
    workspace_gb: Annotated[
        float | None,
        typer.Option(metavar="GB", help="Workspace size limit; the agent is stopped past it."),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(metavar="IMAGE", help="Container image (docker, podman) or .sif (apptainer)."),
    ] = None,
    max_procs: Annotated[
        int, typer.Option(metavar="N", help="Most processes and threads the agent may run.")
    ] = 4096,
    seed: Annotated[
        int, typer.Option(metavar="N", help="Seed of the run (repeat a cell with other seeds).")
    ] = 0,
    sweep: Annotated[
        str,
        typer.Option(
            metavar="NAME", help="Folder under the results root that groups this run with others."
        ),
    ] = "adhoc",
    results: ResultsOpt = None,
    resume_policy: Annotated[
        ResumePolicyOpt,
        typer.Option(
            help="What a relaunched agent gets after a harness crash: the unused budget "
            "(remaining) or only what is left before the original deadline (deadline).",
        ),
    ] = ResumePolicyOpt.remaining,
    eval_timeout: Annotated[
        str | None,
        typer.Option(
            metavar="DURATION",
            help="Time limit of the final evaluation, e.g. 2h (default: the benchmark's own).",
        ),
    ] = None,
    eval_backend: cli_eval.BackendOpt = "hf",
    judge_model: cli_eval.JudgeOpt = None,
    judge_base_url: cli_eval.JudgeUrlOpt = None,
    agent_judge_budget: Annotated[
        float,
        typer.Option(
            metavar="USD",
            help="Dollar budget of the judge calls the harness makes to score the agent's own "
            "evaluate.py runs on a judged benchmark (0: none).",
        ),
    ] = 1.0,
    pass_env: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="Pass this environment variable to the agent (repeatable). The agent's "
            "environment is an allow-list; only use this for non-secrets, or knowingly.",
        ),
    ] = None,
    allow_long: Annotated[
        bool, typer.Option("--allow-long", help="Allow a --budget over 7 days.")
    ] = False,
    resume: Annotated[
        Path | None,
        typer.Option(
            metavar="RUN_DIR",
            help="Continue this run directory from its first unfinished stage (other options "
            "are taken from its run.json).",
        ),
    ] = None,
    until: Annotated[
        StageOpt | None,
        typer.Option(
            help="Stop after this stage (e.g. collect, to inspect final_model before "
            "evaluating); `--resume` carries on later.",
        ),
    ] = None,
    suite: SuiteOpt = None,
) -> None:
    """Run one agent on one base model and benchmark, end to end.

    Stages: prepare → solve (the agent, until its budget runs out) → collect final_model →
    integrity → evaluate → score. Progress goes to stderr; everything is recorded in the run
    directory, whose path is printed first.
    """
    settings = load_settings(results)
    stop: StageName | None = until.value if until else None  # type: ignore[assignment]
    if resume is not None:
        _resume(resume.resolve(), settings, stop)
        return
    if not agent or not base_model or not benchmark:
        missing = [n for n, v in (("--agent", agent), ("--base-model", base_model),
                                  ("--benchmark", benchmark)) if not v]  # fmt: skip
        raise ConfigError(f"missing {', '.join(missing)}", "or pass --resume RUN_DIR")
    benchmark_id = BENCHMARKS.get(benchmark).id
    run_suite = suite_for_run(suite, benchmark_id)  # before anything is created
    budget_s = _duration("--budget", budget, "10h")
    if budget_s > MAX_BUDGET_S and not allow_long:
        raise ConfigError(
            f"--budget {budget} ({format_duration(budget_s)}) is over 7 days",
            "pass --allow-long if you mean it",
        )
    eval_timeout_s = _duration("--eval-timeout", eval_timeout, "2h") if eval_timeout else None
    spec = RunSpec(
        run_id=new_run_id(agent, base_model, benchmark),
        sweep=check_sweep_name(sweep),
        agent=AGENTS.get(agent).name,
        agent_model=agent_model,
        agent_cmd=agent_cmd,
        agent_name=_agent_name(agent_name),
        agent_dir=str(agent_dir.resolve()) if agent_dir else None,
        agent_effort=agent_effort,
        continue_prompts=continue_prompts,
        continue_min_s=_duration("--continue-min", continue_min, "10m"),
        base_model=MODELS.get(base_model).name,
        benchmark=benchmark_id,
        suite=run_suite.id,
        budget_s=budget_s,
        sandbox=SANDBOXES.get(sandbox).name if sandbox else default_sandbox(),
        seed=seed,
        resume_policy=resume_policy.value,
        eval_timeout_s=eval_timeout_s,
        eval_backend=eval_backend,
        judge_model=judge_model,
        judge_base_url=judge_base_url,
        agent_judge_budget_usd=agent_judge_budget,
        pass_env=_pass_env(pass_env or []),
        network=network.value if network else None,
        allow_hosts=[parse_allow_host(h) for h in allow_host or []],
        api_provider=api_provider.value if api_provider else None,
        api_budget_usd=api_budget_usd,
        allow_provider_tools=allow_provider_tools,
        gpus=parse_gpu_list(gpus) if gpus is not None else None,
        limits=SandboxLimits(memory_gb=memory_gb, workspace_gb=workspace_gb, processes=max_procs),
        image=image,
    )
    _run_spec(spec, settings, stop)


@app.command(epilog=DEMO_EPILOG)
def demo(
    results: ResultsOpt = None,
    minutes: Annotated[
        float, typer.Option(metavar="N", help="Budget of each agent, in minutes.")
    ] = 6.0,
    suite: SuiteOpt = None,
) -> None:
    """Run noop and recipe on ptb-tiny × arith offline; print the leaderboard.

    Needs no GPU, no API key and no network: the tiny base model is built locally the first
    time, and recipe really fine-tunes it, so its score beats noop's.
    """
    if minutes <= 0:
        raise ConfigError(f"--minutes {minutes:g} is not a budget", "e.g. --minutes 2")
    settings = load_settings(results)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    sweep = SweepSpec(
        name=f"demo-{stamp}",
        agents=[AgentEntry(agent="noop"), AgentEntry(agent="recipe")],
        base_models=["ptb-tiny"],
        benchmarks=["arith"],
        budget=max(1, round(minutes * 60)),
        suite=suite_by_name(suite).id,
    )
    runs = sweep.expand()  # first: refused here if no sandbox can isolate
    console.print("sandbox: {} ({})".format(*default_sandbox_reason()), markup=False)
    ensure_writable(settings.results_dir / sweep.name)
    with console.status("building the embedded base model ptb-tiny (first time only)"):
        path = MODELS.get("ptb-tiny").locate(settings.models_dir)
    console.print(f"base model ptb-tiny: {escape(str(path))}")
    IN_PROCESS.get("sequential")(runs, settings, _run_spec)
    board = build_leaderboard(settings.results_dir / sweep.name)
    out.print(to_rich(board))
    if gain := gain_line(settings.results_dir / sweep.name):
        out.print(gain, markup=False, highlight=False)
    out.print(f"results: {settings.results_dir / sweep.name}", markup=False)


@app.command(epilog=REPORT_EPILOG)
def report(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIRECTORY",
            help="A results folder; every run below it (any depth) is counted.",
        ),
    ],
    format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="Output format.")
    ] = ReportFormat.md,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--compare",
            metavar="A B",
            help="Paired comparison of two agents (row labels, or unique parts of them) on the "
            "cells both ran: difference with its bootstrap interval.",
        ),
    ] = None,
    ci: Annotated[
        bool,
        typer.Option("--ci", help="Bootstrap 95% intervals of each average (seeds and items)."),
    ] = False,
    with_published: Annotated[
        bool,
        typer.Option(
            "--with-published",
            help="Add the published PostTrainBench agents of the board's suite (imported with "
            "`ptb import reference`, else the copy shipped with ptb) as rows next to yours.",
        ),
    ] = False,
    suite: Annotated[
        str | None,
        typer.Option(
            "--suite",
            metavar="ID",
            help="Build the board for this suite (ptb-v1.2, ptb-v1.0); runs of others are listed "
            "as left out. Default: the one suite the runs follow.",
        ),
    ] = None,
) -> None:
    """Aggregate the runs under DIRECTORY into the weighted leaderboard.

    Benchmarks are weighted as in the paper; a run without a usable model, with a failed
    evaluation or flagged by integrity counts with its base model's score.
    """
    board = build_leaderboard(directory, suite)
    if with_published:
        from posttrainbench.results.published import published_for, with_published_rows

        for published in published_for(board, directory):
            board = with_published_rows(board, published)
    if compare:
        from posttrainbench.report.compare import compare_agents, render_comparison

        text = render_comparison(compare_agents(board, compare[0], compare[1], directory))
    elif ci:
        from posttrainbench.report.compare import render_intervals

        text = render_intervals(board, directory)
    else:
        text = RENDERERS[format.value](board)
    out.print(text, end="" if text.endswith("\n") else "\n", markup=False)


@app.command(epilog=SHOW_EPILOG)
def show(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="A run directory (holds run.json).")
    ],
    json: Annotated[
        bool, typer.Option("--json", help="Print run.json's content instead of tables.")
    ] = False,
) -> None:
    """Show what happened in one run: spec, stages, agent, integrity, score.

    Reads RUN_DIR/run.json only; works on finished, failed and interrupted runs alike.
    """
    record = runner.load(run_dir)
    if json:
        sys.stdout.write(record.model_dump_json(indent=2) + "\n")
        return
    out.print(render_run(record, run_dir.resolve()))


@app.command()
def doctor(
    json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """What this machine offers ptb: sandbox backends, tools, GPUs, agent CLIs, packages.

    Each missing piece comes with the command that installs it.
    """
    from posttrainbench.doctor import diagnose, render

    report = diagnose()
    if json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
        return
    out.print(render(report))


sweep_app = typer.Typer(help="Run a grid of runs from a sweep file, on this machine or a cluster.")
app.add_typer(sweep_app, name="sweep")

SWEEP_EPILOG = """Example sweep file (TOML; YAML works too):

  name = "qwen-math"
  base_models = ["Qwen/Qwen3-1.7B-Base"]
  benchmarks = ["gsm8k"]
  seeds = [0, 1, 2]
  budget = "10h"
  [[agents]]
  agent = "claude-code"
  agent_model = "claude-sonnet-4-5"
  [[agents]]
  agent = "command"
  agent_name = "my-agent"
  agent_dir = "my_agent"  # relative to this file; read-only at /agent
  agent_cmd = "python /agent/my_agent.py"
  [executor]
  kind = "local"        # or slurm, ray, htcondor
  slots = 4
  gpus = [0, 1, 2, 3]
  gpus_per_run = 1
"""


@sweep_app.command("run", epilog=SWEEP_EPILOG)
def sweep_run(
    file: Annotated[Path, typer.Argument(metavar="SWEEP_FILE", help="A .toml or .yaml file.")],
    results: ResultsOpt = None,
    retry_delay: Annotated[
        str, typer.Option(metavar="DURATION", help="Pause before retrying failed runs.")
    ] = "30s",
    until: Annotated[
        StageOpt | None,
        typer.Option(
            help="Stop each run after this stage (e.g. collect, to run the agents on GPU nodes "
            "and evaluate later); running the sweep again without it carries on."
        ),
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Also try again, once, the runs that failed for a cause no retry fixes by "
            "itself (a configuration or a refused key): after you fixed it.",
        ),
    ] = False,
) -> None:
    """Run every run of the sweep that is not done yet; run it again to resume.

    Run ids are stable: finished runs are kept, unfinished ones resume at their first unfinished
    stage, missing ones start, and infrastructure failures are retried (executor.retries).
    """
    from posttrainbench.scale.driver import run_sweep
    from posttrainbench.scale.status import render, sweep_status
    from posttrainbench.scale.sweep import load_sweep_file

    settings = load_settings(results)
    spec = load_sweep_file(file)
    if spec.sandbox is None:
        default_sandbox()  # refuses here, before anything is printed or made, if bwrap cannot run
    delay = (
        0 if retry_delay.strip() in ("0", "0s") else _duration("--retry-delay", retry_delay, "30s")
    )
    stop: StageName | None = until.value if until else None  # type: ignore[assignment]
    states = run_sweep(
        spec, settings, lambda msg: console.print(escape(msg)), delay, stop, retry_failed
    )
    out.print(render(sweep_status(settings.results_dir / spec.name)))
    failed = sum(state == "failed" for state, _ in states.values())
    if failed:
        console.print(
            f"{failed} run(s) failed for a cause no retry fixes by itself (see ptb sweep status); "
            f"once fixed, try them again: ptb sweep run {file} --retry-failed",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
    if any(state != "done" for state, _ in states.values()):
        sys.exit(1)


@sweep_app.command("status")
def sweep_status_cmd(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="SWEEP_DIR|SWEEP_FILE",
            help="The sweep's folder, or its sweep file (found under $PTB_RESULTS or ./results).",
        ),
    ],
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh every few seconds until Ctrl-C.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Runs by state, time left, scores, GPU-hours used and ahead, LLM dollars so far."""
    import time

    from rich.live import Live

    from posttrainbench.scale.status import render, sweep_status
    from posttrainbench.scale.sweep import load_sweep_file

    if directory.is_file() and directory.suffix in (".toml", ".yaml", ".yml"):  # the sweep file
        directory = load_settings().results_dir / load_sweep_file(directory).name
    if as_json:
        out.print(sweep_status(directory).model_dump_json(indent=2), markup=False)
        return
    if not watch:
        out.print(render(sweep_status(directory)))
        return
    with Live(render(sweep_status(directory)), console=out, refresh_per_second=1) as live:
        while True:
            time.sleep(5)
            live.update(render(sweep_status(directory)))


agents_app = typer.Typer(help="Install and check the agent CLIs (pinned npm versions).")
app.add_typer(agents_app, name="agents")


@agents_app.command("install")
def agents_install(
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="[NAME]...", help="Agents to install (default: every CLI agent)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Reinstall even if present.")] = False,
) -> None:
    """Install agent CLIs from npm at their pinned versions into ptb's own prefix.

    Example: ptb agents install claude-code codex
    """
    from posttrainbench.agents import get_agent, install

    settings = load_settings()
    chosen = names or [n for n, _ in AGENTS if get_agent(n).cli is not None]
    for name in chosen:
        cli = get_agent(AGENTS.get(name).name).cli
        if cli is None:
            raise ConfigError(f"agent {name!r} has no CLI to install", "see: ptb agents list")
        info = install.install(name, cli, settings, force=force)
        out.print(f"{name:12} {info.package}@{info.version}  {info.path}", markup=False)


@agents_app.command("list")
def agents_list() -> None:
    """The CLI agents, their pinned versions and whether they are installed here."""
    from posttrainbench.agents import get_agent, install
    from posttrainbench.errors import PtbError

    settings = load_settings()
    for name, _ in AGENTS:
        agent = get_agent(name)
        if agent.cli is None:
            continue
        try:
            state = "installed: " + install.locate(name, agent.cli, settings).path
        except PtbError as exc:
            state = f"not installed ({exc.hint})" if exc.hint else str(exc)
        pinned = f"{agent.cli.package}@{agent.cli.version}"
        models = ", ".join(
            f"{p}: {agent.default_model(p)}" for p in getattr(agent, "providers", ())
        )
        out.print(f"{name:12} {pinned:34} {state}\n{'':12} default model {models}", markup=False)


app.command("eval")(cli_eval.eval_cmd)
app.command("judge")(cli_integrity.judge_cmd)
app.command("site")(cli_site.site_cmd)
app.command("view")(cli_site.view_cmd)
app.command("bundle")(cli_published.bundle_cmd)
app.command("verify")(cli_published.verify_cmd)
import_app = typer.Typer(help="Bring results from elsewhere into your results folder.")
import_app.command("reference")(cli_published.import_reference_cmd)
app.add_typer(import_app, name="import")
app.command("review")(cli_integrity.review_cmd)
app.command("baseline")(cli_eval.baseline_cmd)
app.command("audit")(cli_eval.audit_cmd)
data_app = typer.Typer(
    help="Fill the caches the evaluation reads offline (where there is network)."
)
app.add_typer(data_app, name="data")
data_app.command("prefetch")(cli_eval.prefetch_cmd)


@app.command("list")
def list_(
    kind: Annotated[
        ListKind,
        typer.Argument(
            metavar="KIND", help="What to list: models, benchmarks, agents, sandboxes or suites."
        ),
    ],
) -> None:
    """List the registered models, benchmarks, agents or sandboxes."""
    if kind is ListKind.models:
        for name, m in MODELS:
            out.print(f"{name:32} {m.display_name:22} instruct: {m.instruct or '—'}", markup=False)
    elif kind is ListKind.benchmarks:
        for name, b in BENCHMARKS:
            state = f"{b.n_items or '?'} items, {b.metric_label}" if b.evaluable else "—"
            judged = ", LLM-judged" if b.judged else ""
            out.print(f"{name:18} {b.display_name:20} {state}{judged}", markup=False)
    elif kind is ListKind.agents:
        for name, a in AGENTS:
            out.print(f"{name:12} {a.description}", markup=False)
    elif kind is ListKind.suites:
        for name, s in SUITES:
            default = " (default)" if name == DEFAULT_SUITE else ""
            out.print(f"{name:10} {s.published}{default}: {s.description}", markup=False)
    else:
        for name, cls in SANDBOXES:
            c = cls.capabilities
            limits = ", ".join(c.limits) or "none"
            out.print(
                f"{name:10} isolation: {'yes' if c.isolation else 'no':3}  network policy: "
                f"{'yes' if c.network_policy else 'no':3}  GPUs: {'yes' if c.gpu else 'no':3}  "
                f"limits: {limits}",
                markup=False,
            )


# --- errors, signals and exit codes -------------------------------------------------------------


def _fail(message: str, hint: str | None, code: int) -> NoReturn:
    line = f"{message} (hint: {hint})" if hint else message
    console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _usage_error(exc: ClickException) -> NoReturn:
    """One line for a parser error (typer's vendored click): unknown option, bad value …"""
    ctx = exc.ctx if isinstance(exc, UsageError) else None
    command = ctx.command_path if ctx is not None else "ptb"
    if isinstance(exc, NoArgsIsHelpError):  # no command: the help, then why it is an error
        out.print(exc.format_message(), markup=False, highlight=False)
        _fail("missing command", f"see '{command} --help'", 2)
    message = " ".join(exc.format_message().split()).replace("Value error, ", "")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    hint = f"see '{command} --help'"
    if given := re.search(r"'([^']*)' is not one of (.*)", message):
        match = difflib.get_close_matches(given[1], re.findall(r"'([^']*)'", given[2]), n=1)
        hint = f"did you mean {match[0]!r}? {hint}" if match else hint
    _fail(message, hint, exc.exit_code)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _interrupted_by
    if _interrupted_by is not None:
        # Already stopping: let the runner finish recording and killing the agent.
        os.write(2, b"still stopping the run; send SIGKILL to force (ptb run --resume copes)\n")
        return
    _interrupted_by = signum
    raise HarnessInterrupted(signum)


def _interrupted(signum: int) -> NoReturn:
    name = signal.Signals(signum).name
    if current_run_dir is not None:
        message = (
            f"interrupted by {name}; run.json records where it stopped — continue with: "
            f"ptb run --resume {current_run_dir}"
        )
    else:
        message = f"interrupted by {name}"
    console.print(f"[red]{escape(message)}[/]", highlight=False, soft_wrap=True)
    sys.exit(128 + signum)


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console)]
    )
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    offline.hub_offline()  # ptb's own hub reads are local; `ptb data prefetch` turns it back
    try:
        # Typer turns a KeyboardInterrupt in a command into a returned 130; the handler above
        # remembers which signal it was.
        code = app(standalone_mode=False, prog_name="ptb")
    except PtbError as exc:
        if _interrupted_by is not None:
            _interrupted(_interrupted_by)
        _fail(exc.message, exc.hint, exc.exit_code)
    except ClickException as exc:
        _usage_error(exc)
    except typer.Abort:
        _fail("aborted", None, 1)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, HarnessInterrupted) else signal.SIGINT
        _interrupted(_interrupted_by or signum)
    except ValidationError as exc:  # a value no option check caught, refused by a record
        _fail(plain(exc), "see 'ptb --help' for the option's format", 2)
    except Exception as exc:  # a bug of ptb's: still one line; PTB_DEBUG=1 shows where
        if os.environ.get("PTB_DEBUG"):
            raise
        where = f"{type(exc).__name__}: {exc}".splitlines()[0]
        _fail(f"internal error: {where}", "rerun with PTB_DEBUG=1 for the traceback", 1)
    if _interrupted_by is not None or code == 130:
        _interrupted(_interrupted_by or signal.SIGINT)
    sys.exit(code if isinstance(code, int) else 0)
