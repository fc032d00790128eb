"""run.json: the record of one run, its stages, what was collected, and its final score."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from posttrainbench.records.agent import AgentOutcome, CliInfo
from posttrainbench.records.base import Record, Versioned, migration
from posttrainbench.records.evaluation import EvalMetrics
from posttrainbench.records.gpu import GpuPreflight
from posttrainbench.records.integrity import Review, Verdict
from posttrainbench.records.spec import RunSpec

StageName = Literal["prepare", "solve", "collect", "integrity", "evaluate", "score"]
STAGES: tuple[StageName, ...] = ("prepare", "solve", "collect", "integrity", "evaluate", "score")
StageState = Literal["pending", "running", "done", "failed"]


CollectStatus = Literal["collected", "missing", "refused"]


BaselineSource = Literal["published", "measured"]


ScoreSource = Literal[
    "evaluated",  # the harness evaluated final_model
    "fallback_no_model",  # no usable final_model (missing or refused): base model's score
    "fallback_eval_failed",  # evaluation of final_model failed: base model's score
    "fallback_flagged",  # integrity verdict flagged the run: base model's score
]


class ErrorInfo(Record):
    """An exception turned into data."""

    type: str
    message: str
    hint: str | None = None
    traceback: str | None = None
    retryable: bool = Field(
        default=False, description="An infrastructure failure: rerunning it may succeed."
    )


class StageStatus(Record):
    state: StageState = "pending"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    error: ErrorInfo | None = None


class CollectedFile(Record):
    path: str
    bytes: int = 0
    sha256: str | None = None


class SkippedFile(Record):
    path: str
    reason: str


class CollectOutcome(Record):
    status: CollectStatus
    files: list[CollectedFile] = Field(
        default_factory=list, description="Files copied to final_model/, with size and digest."
    )
    weights: list[str] = Field(
        default_factory=list,
        description="The one weight set of `files` that provenance and the evaluation read: "
        "model.safetensors, or the index and the shards it names (empty: collected by an older "
        "ptb).",
    )
    skipped: list[SkippedFile] = Field(
        default_factory=list, description="Files left behind, and why (never loaded)."
    )
    total_bytes: int = 0
    reason: str | None = None

    @property
    def file_names(self) -> list[str]:
        return [f.path for f in self.files]


class BaselineRef(Record):
    """The base model's score on the run's benchmark, fixed before the agent starts."""

    score: float = Field(ge=0, le=1)
    source: BaselineSource
    detail: str | None = None


class Outcome(Record):
    """The run's final score and where it came from."""

    score: float = Field(ge=0, le=1)
    source: ScoreSource
    base_score: float | None = None
    reason: str | None = None
    reviewed: str | None = Field(
        default=None, description="Who overrode the integrity verdict, to what, and why."
    )


class HarnessInfo(Record):
    version: str
    python: str
    packages: dict[str, str] = Field(default_factory=dict)
    hostname: str


class RunRecord(Versioned):
    """run.json: the spec plus everything that happened. Written atomically after each change."""

    spec: RunSpec
    harness: HarnessInfo
    stages: dict[StageName, StageStatus] = Field(
        default_factory=lambda: {s: StageStatus() for s in STAGES}
    )
    baseline: BaselineRef | None = Field(default=None, description="Resolved at prepare.")
    gpu_preflight: GpuPreflight | None = Field(default=None, description="Checked at prepare.")
    agent_cli: CliInfo | None = Field(
        default=None, description="Installed and verified at prepare."
    )
    agent: AgentOutcome | None = None
    collect: CollectOutcome | None = None
    verdict: Verdict | None = None
    review: Review | None = Field(default=None, description="A signed human override.")
    metrics: EvalMetrics | None = None
    eval_error: ErrorInfo | None = None
    outcome: Outcome | None = None

    @property
    def complete(self) -> bool:
        return all(self.stages[s].state == "done" for s in STAGES)

    @property
    def failed_stage(self) -> StageName | None:
        return next((s for s in STAGES if self.stages[s].state == "failed"), None)


@migration("RunRecord", 1)
def _run_record_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 kept collected and skipped files as bare names."""
    collect = data.get("collect")
    if isinstance(collect, dict):
        collect = dict(collect)
        collect["files"] = [{"path": f} if isinstance(f, str) else f for f in collect["files"]]
        collect["skipped"] = [
            {"path": f, "reason": "not a model file"} if isinstance(f, str) else f
            for f in collect.get("skipped", [])
        ]
        data["collect"] = collect
    return data
