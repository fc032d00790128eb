"""The options of `ptb run`, one type alias each, and the record they fill (`RunOptions`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from posttrainbench.cli.common import (
    NetworkOpt,
    ProviderOpt,
    ResumePolicyOpt,
    StageOpt,
)

AgentOpt = Annotated[
    str | None, typer.Option(metavar="NAME", help="Agent to run (see: ptb list agents).")
]
BaseModelOpt = Annotated[
    str | None,
    typer.Option(metavar="NAME", help="Base model to post-train (see: ptb list models)."),
]
BenchmarkOpt = Annotated[
    str | None,
    typer.Option(metavar="ID", help="Benchmark to post-train for (see: ptb list benchmarks)."),
]
BudgetOpt = Annotated[
    str,
    typer.Option(
        metavar="DURATION",
        help="Wall-clock time the agent gets, e.g. 10h, 15m, 1h30m, 90s. At most 7 days "
        "unless --allow-long.",
    ),
]
AgentCmdOpt = Annotated[
    str | None,
    typer.Option(
        metavar="CMD",
        help="Shell command that is the agent, for --agent command; runs with bash in the "
        "run's workspace/ (its working directory). Its script is checked before the run "
        "starts.",
    ),
]
AgentDirOpt = Annotated[
    Path | None,
    typer.Option(
        metavar="DIR",
        help="Your agent's files, for --agent command: copied into the run (hashed) and "
        "shown read-only at /agent in the sandbox ($PTB_AGENT_DIR in every sandbox).",
    ),
]
AgentNameOpt = Annotated[
    str | None,
    typer.Option(
        metavar="NAME",
        help="Label of this configuration in reports and on the board (default: the agent's name).",
    ),
]
AgentModelOpt = Annotated[
    str | None,
    typer.Option(
        metavar="MODEL",
        help="LLM behind the agent, e.g. claude-sonnet-4-5, gpt-5, gemini-2.5-pro "
        "(default: the agent's own).",
    ),
]
AgentEffortOpt = Annotated[
    str | None,
    typer.Option(
        metavar="LEVEL",
        help="Reasoning effort of the agent's model, in the CLI's terms (e.g. low, medium, high).",
    ),
]
ContinuePromptsOpt = Annotated[
    int,
    typer.Option(
        metavar="N",
        min=0,
        help="Re-prompt an agent that stops before its budget, up to N times, telling it the "
        "time left (continuing its conversation where the CLI can).",
    ),
]
ContinueMinOpt = Annotated[
    str,
    typer.Option(metavar="DURATION", help="Re-prompt only while at least this much time is left."),
]
SandboxOpt = Annotated[
    str | None,
    typer.Option(
        metavar="NAME",
        help="Sandbox backend: bwrap, docker, podman, apptainer or host (see: ptb doctor). "
        "Default: bwrap; where it cannot isolate here, the run is refused (pass host "
        "knowingly: no isolation).",
    ),
]
NetworkPolicyOpt = Annotated[
    NetworkOpt | None,
    typer.Option(
        help="Egress: none (loopback only), allowlist (HF hub, PyPI, GitHub and --allow-host, "
        "through a logging proxy) or open (anywhere, logged). Default: allowlist where the "
        "sandbox can enforce it, else open.",
    ),
]
AllowHostOpt = Annotated[
    list[str] | None,
    typer.Option(
        metavar="HOST",
        help="Allow this host too under --network allowlist, e.g. wandb.ai, *.example.org, "
        "host:8443 (repeatable).",
    ),
]
ApiProviderOpt = Annotated[
    ProviderOpt | None,
    typer.Option(
        help="The LLM provider the agent may call through the key-free relay (agent CLIs "
        "set their own). The real key stays in this process's environment.",
    ),
]
ApiBudgetOpt = Annotated[
    float | None,
    typer.Option(metavar="USD", help="Dollar budget of the run's LLM calls (relay)."),
]
AllowProviderToolsOpt = Annotated[
    bool,
    typer.Option(
        help="Let the relay forward provider-side tools (web search and fetch, code "
        "execution, MCP); by default it strips them from requests and logs the attempt.",
    ),
]
GpusOpt = Annotated[
    str | None,
    typer.Option(
        metavar="LIST",
        help="GPUs the run gets, e.g. 0 or 0,1 or none (default: every GPU found). They are "
        "checked before the budget starts.",
    ),
]
MemoryOpt = Annotated[
    float | None,
    typer.Option(metavar="GB", help="Memory limit of the sandbox (where a cgroup is available)."),
]
WorkspaceOpt = Annotated[
    float | None,
    typer.Option(metavar="GB", help="Workspace size limit; the agent is stopped past it."),
]
ImageOpt = Annotated[
    str | None,
    typer.Option(metavar="IMAGE", help="Container image (docker, podman) or .sif (apptainer)."),
]
MaxProcsOpt = Annotated[
    int, typer.Option(metavar="N", help="Most processes and threads the agent may run.")
]
SeedOpt = Annotated[
    int, typer.Option(metavar="N", help="Seed of the run (repeat a cell with other seeds).")
]
SweepOpt = Annotated[
    str,
    typer.Option(
        metavar="NAME", help="Folder under the results root that groups this run with others."
    ),
]
RelaunchBudgetOpt = Annotated[
    ResumePolicyOpt,
    typer.Option(
        help="What a relaunched agent gets after a harness crash: the unused budget "
        "(remaining) or only what is left before the original deadline (deadline).",
    ),
]
EvalTimeoutOpt = Annotated[
    str | None,
    typer.Option(
        metavar="DURATION",
        help="Time limit of the final evaluation, e.g. 2h (default: the benchmark's own).",
    ),
]
AgentJudgeBudgetOpt = Annotated[
    float,
    typer.Option(
        metavar="USD",
        help="Dollar budget of the judge calls the harness makes to score the agent's own "
        "evaluate.py runs on a judged benchmark (0: none).",
    ),
]
PassEnvOpt = Annotated[
    list[str] | None,
    typer.Option(
        metavar="NAME",
        help="Pass this environment variable to the agent (repeatable). The agent's "
        "environment is an allow-list; only use this for non-secrets, or knowingly.",
    ),
]
AllowLongOpt = Annotated[bool, typer.Option("--allow-long", help="Allow a --budget over 7 days.")]
ResumeOpt = Annotated[
    Path | None,
    typer.Option(
        metavar="RUN_DIR",
        help="Continue this run directory from its first unfinished stage (other options "
        "are taken from its run.json).",
    ),
]
UntilOpt = Annotated[
    StageOpt | None,
    typer.Option(
        help="Stop after this stage (e.g. collect, to inspect final_model before "
        "evaluating); `--resume` carries on later.",
    ),
]


@dataclass(frozen=True)
class RunOptions:
    """What `ptb run` was given, as parsed; `run_spec.spec_from` turns it into a RunSpec."""

    agent: str | None
    base_model: str | None
    benchmark: str | None
    budget: str
    agent_cmd: str | None
    agent_dir: Path | None
    agent_name: str | None
    agent_model: str | None
    agent_effort: str | None
    continue_prompts: int
    continue_min: str
    sandbox: str | None
    network: NetworkOpt | None
    allow_host: list[str] | None
    api_provider: ProviderOpt | None
    api_budget_usd: float | None
    allow_provider_tools: bool
    gpus: str | None
    memory_gb: float | None
    workspace_gb: float | None
    image: str | None
    max_procs: int
    seed: int
    sweep: str
    results: Path | None
    resume_policy: ResumePolicyOpt
    eval_timeout: str | None
    eval_backend: str
    judge_model: str | None
    judge_base_url: str | None
    agent_judge_budget: float
    pass_env: list[str] | None
    allow_long: bool
    resume: Path | None
    until: StageOpt | None
    suite: str | None
