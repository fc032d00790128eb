"""Typed records of a run: what was asked (RunSpec), what happened (RunRecord), what it scored.

This module is the data-only leaf of the package: it imports nothing else from posttrainbench.
Every record carries `schema_version`; `run.json` is a serialised `RunRecord` and the one source of
truth about a run. Scores are fractions in [0, 1]; reports multiply by 100.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

StageName = Literal["prepare", "solve", "collect", "integrity", "evaluate", "score"]
STAGES: tuple[StageName, ...] = ("prepare", "solve", "collect", "integrity", "evaluate", "score")
StageState = Literal["pending", "running", "done", "failed"]
ExitReason = Literal["finished", "timed_out", "crashed", "killed"]
CollectStatus = Literal["collected", "missing", "refused"]
Decision = Literal["clean", "flagged"]
ScoreSource = Literal[
    "evaluated",  # the harness evaluated final_model
    "fallback_no_model",  # no usable final_model (missing or refused): base model's score
    "fallback_eval_failed",  # evaluation of final_model failed: base model's score
    "fallback_flagged",  # integrity verdict flagged the run: base model's score
]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)")


def now() -> datetime:
    return datetime.now(UTC)


def parse_duration(text: str) -> int:
    """'10h', '15m', '20s', '1h30m' or a bare number of seconds → seconds (> 0)."""
    s = text.strip().lower()
    if s.isdigit():
        seconds = float(s)
    else:
        parts = _DURATION.findall(s)
        if not parts or _DURATION.sub("", s).strip():
            raise ValueError(f"malformed duration {text!r}; use e.g. 10h, 15m, 20s or 1h30m")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return round(seconds)


def format_duration(seconds: float) -> str:
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


def new_run_id(agent: str, base_model: str, benchmark: str) -> str:
    """Unique and stable; readable for humans, but nothing parses it — read run.json."""
    stamp = now().strftime("%Y%m%dT%H%M%S")
    model = base_model.rsplit("/", 1)[-1]
    return f"{stamp}-{agent}-{model}-{benchmark}-{secrets.token_hex(3)}"


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunSpec(Record):
    """Everything that defines a run; fixed at creation, never edited afterwards."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    sweep: str = Field("adhoc", description="Group the run belongs to (a sweep name or 'adhoc').")
    agent: str = Field(description="Agent registry name, e.g. 'recipe', 'noop', 'command'.")
    agent_model: str | None = Field(None, description="LLM behind the agent, if any.")
    agent_cmd: str | None = Field(None, description="Shell command for the 'command' agent.")
    base_model: str = Field(description="Base model registry name, e.g. 'Qwen/Qwen3-1.7B-Base'.")
    benchmark: str = Field(description="Benchmark registry id, e.g. 'gsm8k'.")
    budget_s: int = Field(gt=0, description="Wall-clock budget of the agent in seconds.")
    sandbox: str = Field("host", description="Sandbox backend registry name.")
    seed: int = 0
    created_at: datetime = Field(default_factory=now)


class ErrorInfo(Record):
    """An exception turned into data."""

    type: str
    message: str
    hint: str | None = None
    traceback: str | None = None


class StageStatus(Record):
    state: StageState = "pending"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    error: ErrorInfo | None = None


class AgentAttempt(Record):
    """One launch of the agent process. A resumed run may have several."""

    pid: int
    proc_create_time: float | None = Field(
        None, description="Creation time of pid, to recognise the process after a crash."
    )
    started_at: datetime
    ended_at: datetime | None = None
    exit_code: int | None = None
    signal: int | None = None
    exit_reason: ExitReason | None = None
    harness_interrupted: bool = Field(
        default=False, description="The harness died or was stopped while this attempt ran."
    )
    note: str | None = None


class AgentOutcome(Record):
    """The solve stage as data: deadline, every launch, and why the agent stopped."""

    started_at: datetime
    deadline: datetime
    attempts: list[AgentAttempt] = Field(default_factory=list)
    exit_reason: ExitReason | None = None
    wall_s: float | None = None


class CollectOutcome(Record):
    status: CollectStatus
    files: list[str] = Field(default_factory=list, description="Files copied to final_model/.")
    skipped: list[str] = Field(default_factory=list, description="Files left behind, harmless.")
    reason: str | None = None


class CheckResult(Record):
    """One integrity check; written to integrity/<name>.json."""

    schema_version: int = SCHEMA_VERSION
    name: str
    passed: bool
    reasons: list[str] = Field(default_factory=list)
    evidence: dict[str, list[str]] = Field(default_factory=dict)


class Verdict(Record):
    """integrity/verdict.json: the decision over all checks."""

    schema_version: int = SCHEMA_VERSION
    decision: Decision
    reasons: list[str] = Field(default_factory=list)
    checks: list[str] = Field(default_factory=list)


class EvalMetrics(Record):
    """eval/metrics.json: one evaluation of one model on one benchmark split."""

    schema_version: int = SCHEMA_VERSION
    benchmark: str
    split: str
    score: float = Field(ge=0, le=1)
    n_samples: int
    model_path: str
    log_file: str | None = None
    params: dict[str, str | int | float | None] = Field(default_factory=dict)
    duration_s: float | None = None


class Outcome(Record):
    """The run's final score and where it came from."""

    score: float = Field(ge=0, le=1)
    source: ScoreSource
    base_score: float | None = None
    reason: str | None = None


class HarnessInfo(Record):
    version: str
    python: str
    packages: dict[str, str] = Field(default_factory=dict)
    hostname: str


class RunRecord(Record):
    """run.json: the spec plus everything that happened. Written atomically after each change."""

    schema_version: int = SCHEMA_VERSION
    spec: RunSpec
    harness: HarnessInfo
    stages: dict[StageName, StageStatus] = Field(
        default_factory=lambda: {s: StageStatus() for s in STAGES}
    )
    agent: AgentOutcome | None = None
    collect: CollectOutcome | None = None
    verdict: Verdict | None = None
    metrics: EvalMetrics | None = None
    eval_error: ErrorInfo | None = None
    outcome: Outcome | None = None

    @property
    def complete(self) -> bool:
        return all(self.stages[s].state == "done" for s in STAGES)


class LeaderboardRow(Record):
    agent: str
    average: float = Field(description="Weighted average over benchmarks, percent.")
    std: float | None = Field(None, description="Sample std of the average over seeds.")
    n_seeds: int
    n_runs: int
    benchmarks: dict[str, float] = Field(description="Benchmark id → percent.")
    fallbacks: int = Field(0, description="Cells that took the base model's score.")


class Leaderboard(Record):
    schema_version: int = SCHEMA_VERSION
    weights: dict[str, float]
    weighting: Literal["paper", "uniform"]
    rows: list[LeaderboardRow]
    incomplete: list[str] = Field(
        default_factory=list, description="Run ids left out because they have no outcome yet."
    )
