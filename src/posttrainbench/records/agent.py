"""The solve stage as data: every launch of the agent, why it stopped, what it used."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal

from pydantic import Field

from posttrainbench.records.base import Record, now
from posttrainbench.records.spec import ResumePolicy
from posttrainbench.records.usage import ApiUsage, CliUsage

ExitReason = Literal[
    "finished", "timed_out", "crashed", "killed",
    "over_limit",  # stopped by the harness: the workspace outgrew its limit
]  # fmt: skip


AgentFailureKind = Literal[
    "cli_missing",  # the agent's CLI is not installed (checked before the budget starts)
    "cli_version",  # installed, but not the pinned version
    "missing_key",  # no API key in the harness environment
    "invalid_key",  # the provider refused the key (401/403 upstream)
    "provider_outage",  # the provider answered 5xx / 529 overloaded, or could not be reached
    "rate_limited",  # 429 without a usage limit
    "usage_limit",  # a quota, credit or spending limit of the account
    "api_budget",  # the run's own --api-budget-usd was spent (the agent's doing, not retryable)
    "cli_crash",  # the CLI exited non-zero for no reason the relay saw
    "command_crash",  # a command agent (not an LLM CLI) exited non-zero
]


FoundBy = Literal["group", "descendant", "subreaper", "token"]


class ProcessInfo(Record):
    """A process of the agent that the harness had to kill after the agent's main process."""

    pid: int
    name: str = ""
    cmdline: str = ""
    found_by: FoundBy


class LogStats(Record):
    """One capped log of the agent: bytes kept in the file and bytes dropped past the cap."""

    kept_bytes: int = 0
    dropped_bytes: int = 0


class AgentFailure(Record):
    """A classified early stop of an agent's CLI; infrastructure ones are retryable and never
    scored."""

    kind: AgentFailureKind
    retryable: bool
    message: str
    stderr_tail: list[str] = Field(
        default_factory=list, description="The last lines the agent wrote to stderr (redacted)."
    )


class AgentAttempt(Record):
    """One launch of the agent process. A resumed run may have several.

    The attempt is saved *before* the launch with its `token` (exported to the agent's
    environment), so an agent started by a harness that died before recording its pid is still
    found on resume."""

    token: str = Field(default_factory=lambda: secrets.token_hex(8))
    pid: int | None = None
    proc_create_time: float | None = Field(
        default=None, description="Creation time of pid, to recognise the process after a crash."
    )
    started_at: datetime
    deadline: datetime | None = Field(
        default=None, description="When this attempt was to be stopped."
    )
    ended_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    exit_reason: ExitReason | None = None
    harness_interrupted: bool = Field(
        default=False, description="The harness died or was stopped while this attempt ran."
    )
    stragglers: list[ProcessInfo] = Field(
        default_factory=list, description="Processes still alive after the agent, then killed."
    )
    stdout: LogStats | None = None
    stderr: LogStats | None = None
    sandbox_id: str | None = Field(
        default=None, description="What the sandbox backend needs to find and stop this launch."
    )
    limits_enforced: list[str] = Field(default_factory=list)
    limits_not_enforced: list[str] = Field(default_factory=list)
    continuation: int = Field(default=0, description="0: the task prompt; k: the k-th re-prompt.")
    failure: AgentFailure | None = Field(
        default=None, description="Why the agent's CLI stopped early, where the harness can tell."
    )
    note: str | None = None

    @property
    def ran_s(self) -> float:
        end = self.ended_at or now()
        return max(0.0, (end - self.started_at).total_seconds())


MAX_SUMMARY_HOSTS = 100


class EgressSummary(Record):
    """Counts over a run's egress log, for run.json."""

    requests: int = 0
    allowed: int = 0
    denied: int = 0
    failed: int = Field(
        default=0, description="Allowed requests that failed upstream (DNS, connect)."
    )
    bytes_up: int = 0
    bytes_down: int = 0
    distinct_hosts: int = 0
    hosts: list[str] = Field(
        default_factory=list, description=f"Hosts requested, sorted; at most {MAX_SUMMARY_HOSTS}."
    )
    denied_hosts: list[str] = Field(
        default_factory=list, description=f"Hosts denied, sorted; at most {MAX_SUMMARY_HOSTS}."
    )
    overloaded: int = Field(default=0, description="Connections refused at the concurrency limit.")


class CliInfo(Record):
    """The agent CLI a run used, as installed and verified at prepare."""

    package: str
    version: str
    reported: str = Field(description="What `--version` printed.")
    path: str


class AgentEvaluation(Record):
    """One evaluation the agent's evaluate.py had the harness-side scoring service score."""

    at: datetime
    split: str
    n_items: int = Field(description="Items scored (the --limit selection).")
    n_answered: int = Field(default=0, description="Items the agent sent a completion for.")
    metric: str | None = None
    score: float | None = None
    judge_cost_usd: float | None = None
    duration_s: float = 0.0
    error: str | None = Field(default=None, description="Why it was not scored, if it was not.")


class AgentOutcome(Record):
    """The solve stage as data: budget and how it was spent, every launch, why the agent stopped.

    `used_s` is the time the agent ran (summed over attempts); `downtime_s` the time between
    attempts while no harness ran it. Under resume policy `remaining`, downtime is not charged.
    """

    started_at: datetime
    deadline: datetime = Field(description="The deadline of the latest attempt.")
    budget_s: int | None = None
    resume_policy: ResumePolicy = "deadline"
    attempts: list[AgentAttempt] = Field(default_factory=list)
    exit_reason: ExitReason | None = None
    wall_s: float | None = Field(default=None, description="Time the agent ran, over all attempts.")
    downtime_s: float = Field(default=0.0, description="Gaps between attempts (harness down).")
    api_usage: ApiUsage | None = Field(default=None, description="LLM calls through the relay.")
    egress: EgressSummary | None = Field(default=None, description="Requests through the proxy.")
    evaluations: list[AgentEvaluation] = Field(
        default_factory=list, description="The agent's own evaluations, scored harness-side."
    )
    reprompts: int = Field(default=0, description="Re-prompts given after the agent stopped.")
    cli_usage: CliUsage | None = Field(
        default=None, description="What the agent's CLI itself reported (from its trajectory)."
    )
    usage_check: str | None = Field(
        default=None, description="The CLI's report against the relay's meter: agree, or how not."
    )
