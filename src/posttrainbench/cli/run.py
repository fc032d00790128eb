"""`ptb run` (one run, end to end, or its resumption) and `ptb demo` (two runs offline)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from posttrainbench import runner
from posttrainbench.catalog import MODELS
from posttrainbench.catalog.suites import suite as suite_by_name
from posttrainbench.cli import state
from posttrainbench.cli.common import (
    BackendOpt,
    JudgeOpt,
    JudgeUrlOpt,
    ResultsOpt,
    ResumePolicyOpt,
    SuiteOpt,
    console,
    out,
)
from posttrainbench.cli.run_options import (
    AgentCmdOpt,
    AgentDirOpt,
    AgentEffortOpt,
    AgentJudgeBudgetOpt,
    AgentModelOpt,
    AgentNameOpt,
    AgentOpt,
    AllowHostOpt,
    AllowLongOpt,
    AllowProviderToolsOpt,
    ApiBudgetOpt,
    ApiProviderOpt,
    BaseModelOpt,
    BenchmarkOpt,
    BudgetOpt,
    ContinueMinOpt,
    ContinuePromptsOpt,
    EvalTimeoutOpt,
    GpusOpt,
    ImageOpt,
    MaxProcsOpt,
    MemoryOpt,
    NetworkPolicyOpt,
    PassEnvOpt,
    RelaunchBudgetOpt,
    ResumeOpt,
    RunOptions,
    SandboxOpt,
    SeedOpt,
    SweepOpt,
    UntilOpt,
    WorkspaceOpt,
)
from posttrainbench.cli.run_spec import spec_from
from posttrainbench.config import Settings, load_settings
from posttrainbench.embedded.demo_summary import gain_line
from posttrainbench.errors import ConfigError
from posttrainbench.progress import StageProgress
from posttrainbench.records import STAGES, RunRecord, RunSpec, StageName, format_duration
from posttrainbench.report import build_leaderboard
from posttrainbench.report.tables import to_rich
from posttrainbench.results.store import ensure_writable
from posttrainbench.sandbox import default_sandbox_reason
from posttrainbench.scale.sweep import IN_PROCESS, AgentEntry, SweepSpec

RUN_EPILOG = """\
\b
Examples:
  ptb run --agent recipe --base-model ptb-tiny --benchmark arith --budget 5m
  ptb run --agent command --agent-dir ./my_agent --agent-cmd "python /agent/my_agent.py" \\
          --agent-name my-agent --base-model ptb-tiny --benchmark arith --budget 2h
  ptb run --resume results/adhoc/<run_id>      # after a crash, Ctrl-C or kill
"""

DEMO_EPILOG = """\
\b
Examples:
  ptb demo                        # 6 minutes per agent, results in ./results/demo-<time>/
  ptb demo --minutes 2 --results /tmp/ptb-demo
"""


def _execute(run_dir: Path, settings: Settings, until: StageName | None = None) -> RunRecord:
    spec = runner.load(run_dir).spec
    state.current_run_dir = run_dir
    label = f"{spec.agent}·{spec.base_model.rsplit('/', 1)[-1]}·{spec.benchmark}"
    console.print(f"run [bold]{escape(spec.run_id)}[/] → {escape(str(run_dir))}", soft_wrap=True)
    with StageProgress(console, label, spec.budget_s) as progress:
        record = runner.execute(run_dir, settings, on_stage=progress, until=until)
    state.current_run_dir = None  # only once the run ended normally: an interruption names it
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


def run(
    agent: AgentOpt = None,
    base_model: BaseModelOpt = None,
    benchmark: BenchmarkOpt = None,
    budget: BudgetOpt = "10h",
    agent_cmd: AgentCmdOpt = None,
    agent_dir: AgentDirOpt = None,
    agent_name: AgentNameOpt = None,
    agent_model: AgentModelOpt = None,
    agent_effort: AgentEffortOpt = None,
    continue_prompts: ContinuePromptsOpt = 0,
    continue_min: ContinueMinOpt = "10m",
    sandbox: SandboxOpt = None,
    network: NetworkPolicyOpt = None,
    allow_host: AllowHostOpt = None,
    api_provider: ApiProviderOpt = None,
    api_budget_usd: ApiBudgetOpt = None,
    allow_provider_tools: AllowProviderToolsOpt = False,
    gpus: GpusOpt = None,
    memory_gb: MemoryOpt = None,
    workspace_gb: WorkspaceOpt = None,
    image: ImageOpt = None,
    max_procs: MaxProcsOpt = 4096,
    seed: SeedOpt = 0,
    sweep: SweepOpt = "adhoc",
    results: ResultsOpt = None,
    resume_policy: RelaunchBudgetOpt = ResumePolicyOpt.remaining,
    eval_timeout: EvalTimeoutOpt = None,
    eval_backend: BackendOpt = "auto",
    judge_model: JudgeOpt = None,
    judge_base_url: JudgeUrlOpt = None,
    agent_judge_budget: AgentJudgeBudgetOpt = 1.0,
    pass_env: PassEnvOpt = None,
    allow_long: AllowLongOpt = False,
    resume: ResumeOpt = None,
    until: UntilOpt = None,
    suite: SuiteOpt = None,
) -> None:
    """Run one agent on one base model and benchmark, end to end.

    Stages: prepare → solve (the agent, until its budget runs out) → collect final_model →
    integrity → evaluate → score. Progress goes to stderr; everything is recorded in the run
    directory, whose path is printed first.
    """
    options = RunOptions(**locals())  # every parameter, by name: nothing else is local yet
    settings = load_settings(options.results)
    stop: StageName | None = until.value if until else None  # type: ignore[assignment]
    if resume is not None:
        _resume(resume.resolve(), settings, stop)
        return
    _run_spec(spec_from(options), settings, stop)


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
