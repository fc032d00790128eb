"""What was asked: RunSpec, the agent configuration that makes runs comparable, limits."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from posttrainbench.records.base import Record, Versioned, format_duration, migration, now

MAX_BUDGET_S = 7 * 24 * 3600  # longer budgets need --allow-long
# `--agent-name`: a label that fits a table cell, a file name and a URL.
AGENT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+:-]{0,63}$"


NetworkPolicy = Literal[
    "none",  # loopback only (and the API relay, when the agent has a provider)
    "allowlist",  # through the egress proxy, to the default hosts and --allow-host ones
    "open",  # through the egress proxy, anywhere; still logged
]
ApiProvider = Literal["anthropic", "openai", "gemini"]


ResumePolicy = Literal[
    "remaining",  # a resumed agent gets the budget it had not used yet; harness downtime is free
    "deadline",  # the deadline set at the first launch holds; downtime is lost to the agent
]


def new_run_id(agent: str, base_model: str, benchmark: str) -> str:
    """Unique and stable; readable for humans, but nothing parses it — read run.json."""
    stamp = now().strftime("%Y%m%dT%H%M%S")
    model = base_model.rsplit("/", 1)[-1]
    return f"{stamp}-{agent}-{model}-{benchmark}-{secrets.token_hex(3)}"


class AgentConfig(Record):
    """What makes two runs comparable: one leaderboard row per distinct configuration."""

    agent: str
    agent_model: str | None = None
    agent_cmd: str | None = None
    agent_effort: str | None = None
    continue_prompts: int = 0
    budget_s: int
    sandbox: str
    network: NetworkPolicy | None = None
    agent_name: str | None = None
    agent_dir_sha256: str | None = None  # the --agent-dir snapshot's content hash

    def label(self) -> str:
        """Short name; `detail()` tells apart configurations of the same agent."""
        name = f"{self.agent}:{self.agent_model}" if self.agent_model else self.agent
        name = self.agent_name or name
        if self.agent_effort:
            name += f"@{self.agent_effort}"
        return name + (f"+c{self.continue_prompts}" if self.continue_prompts else "")

    def detail(self) -> str:
        parts = [f"budget {format_duration(self.budget_s)}", f"sandbox {self.sandbox}"]
        if self.continue_prompts:
            parts.append(f"re-prompted up to {self.continue_prompts}x")
        if self.network:
            parts.append(f"network {self.network}")
        if self.agent_cmd:
            cmd = self.agent_cmd if len(self.agent_cmd) <= 40 else self.agent_cmd[:37] + "..."
            parts.insert(0, f"cmd {cmd!r}")
        if self.agent_dir_sha256:
            parts.insert(1 if self.agent_cmd else 0, f"files {self.agent_dir_sha256[:12]}")
        return ", ".join(parts)


class SandboxLimits(Record):
    """Resource limits of the agent, where the sandbox can enforce them (see run.json)."""

    memory_gb: float | None = Field(default=None, gt=0, description="Whole sandbox, resident.")
    processes: int | None = Field(default=4096, gt=0, description="Processes and threads.")
    open_files: int | None = Field(default=65536, gt=0)
    workspace_gb: float | None = Field(
        default=None, gt=0, description="Workspace size; also the largest single file."
    )


class RunSpec(Versioned):
    """Everything that defines a run; fixed at creation, never edited afterwards."""

    run_id: str
    sweep: str = Field("adhoc", description="Group the run belongs to (a sweep name or 'adhoc').")
    agent: str = Field(description="Agent registry name, e.g. 'recipe', 'noop', 'command'.")
    agent_model: str | None = Field(None, description="LLM behind the agent, if any.")
    agent_cmd: str | None = Field(None, description="Shell command for the 'command' agent.")
    agent_name: str | None = Field(
        default=None,
        pattern=AGENT_NAME_PATTERN,
        description="Label of the configuration in reports.",
    )
    agent_dir: str | None = Field(
        default=None,
        description="The user's agent folder (absolute), snapshotted into agent/files/.",
    )
    agent_dir_sha256: str | None = Field(
        default=None, description="Content hash of that snapshot: names, modes, links, bytes."
    )
    agent_effort: str | None = Field(
        None, description="Reasoning effort of the agent's model, in the CLI's own terms."
    )
    continue_prompts: int = Field(
        default=0, ge=0, description="Re-prompt an agent that stops early, up to this many times."
    )
    continue_min_s: int = Field(
        default=600, ge=0, description="Re-prompt only while at least this much time is left."
    )
    base_model: str = Field(description="Base model registry name, e.g. 'Qwen/Qwen3-1.7B-Base'.")
    benchmark: str = Field(description="Benchmark registry id, e.g. 'gsm8k'.")
    suite: str = Field(
        default="ptb-v1.2",
        description="Protocol version the run follows (catalog.suites): benchmarks, seeds.",
    )
    budget_s: int = Field(gt=0, description="Wall-clock budget of the agent in seconds.")
    sandbox: str = Field("host", description="Sandbox backend registry name.")
    seed: int = 0
    resume_policy: ResumePolicy = Field(
        default="remaining",
        description="How much time a relaunched agent gets after a harness crash.",
    )
    eval_timeout_s: int | None = Field(
        default=None, gt=0, description="Evaluation time limit; None takes the benchmark's default."
    )
    eval_backend: str = Field(
        default="auto",
        description="Evaluation backend: auto (the default; hf for now), engine, hf or vllm.",
    )
    judge_model: str | None = Field(
        default=None, description="LLM judge of judged benchmarks (an inspect model name)."
    )
    judge_base_url: str | None = Field(
        default=None, description="OpenAI-compatible endpoint of the judge."
    )
    pass_env: list[str] = Field(
        default_factory=list, description="Extra environment variables passed to the agent."
    )
    network: NetworkPolicy | None = Field(
        default=None, description="Egress policy; None: the sandbox's default, fixed at creation."
    )
    allow_hosts: list[str] = Field(
        default_factory=list, description="Hosts allowed besides the default allowlist."
    )
    api_provider: ApiProvider | None = Field(
        default=None, description="The one LLM provider the relay forwards to (None: no relay)."
    )
    api_budget_usd: float | None = Field(
        default=None, gt=0, description="Dollar budget of the run's LLM calls through the relay."
    )
    allow_provider_tools: bool = Field(
        default=False,
        description="Let the relay forward provider-side tools (web search and fetch, code runs).",
    )
    agent_judge_budget_usd: float = Field(
        default=1.0,
        ge=0,
        description="Dollar budget of the judge calls the scoring service makes for the agent's "
        "own evaluations of a judged benchmark (0: none).",
    )
    gpus: list[int] | None = Field(
        default=None, description="GPU indices the run gets; None: every GPU found at prepare."
    )
    limits: SandboxLimits = Field(default_factory=lambda: SandboxLimits())
    image: str | None = Field(
        default=None, description="Container image (docker/podman) or .sif (apptainer)."
    )
    created_at: datetime = Field(default_factory=now)

    @property
    def agent_config(self) -> AgentConfig:
        return AgentConfig(
            agent=self.agent,
            agent_model=self.agent_model,
            agent_cmd=self.agent_cmd,
            agent_effort=self.agent_effort,
            continue_prompts=self.continue_prompts,
            budget_s=self.budget_s,
            sandbox=self.sandbox,
            network=self.network,
            agent_name=self.agent_name,
            agent_dir_sha256=self.agent_dir_sha256,
        )


@migration("RunSpec", 3)
def _run_spec_v3(data: dict[str, Any]) -> dict[str, Any]:
    """v3 runs predate suites; they followed v1.0's protocol (one seed, seven benchmarks)."""
    data.setdefault("suite", "ptb-v1.0")
    return data
