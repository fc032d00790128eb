"""The leaderboard over a results dir: sections, rows, cells and the runs left out."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from posttrainbench.records.base import Record, Versioned
from posttrainbench.records.run import ScoreSource, StageName
from posttrainbench.records.spec import AgentConfig
from posttrainbench.records.usage import ApiUsage, Usd

Weighting = Literal[
    "paper",  # inverse published instruct − base gap, normalised over the section's benchmarks
    "uniform",  # benchmarks without a published gap (the embedded ones): equal weights
]
FallbackSource = Literal["fallback_no_model", "fallback_eval_failed", "fallback_flagged"]
FALLBACK_SOURCES: tuple[FallbackSource, ...] = (
    "fallback_no_model",
    "fallback_eval_failed",
    "fallback_flagged",
)


class CellKey(Record):
    """One position of a leaderboard section's grid: a seed × benchmark × base model."""

    seed: int = Field(description="Seed of the run(s) that fill this position.")
    benchmark: str = Field(description="Benchmark registry id.")
    base_model: str = Field(description="Base model registry name.")


class LeaderboardCell(CellKey):
    """One scored run of a leaderboard row: its score and where that score came from."""

    run_id: str = Field(description="The run that produced this cell.")
    score: float = Field(description="Percent; a fallback cell holds the base model's score.")
    source: ScoreSource = Field(description="`Outcome.source`: evaluated, or why it fell back.")
    reason: str | None = Field(None, description="`Outcome.reason`: why it fell back, if known.")
    reviewed: str | None = Field(None, description="`Outcome.reviewed`: a human override.")
    llm: ApiUsage | None = Field(None, description="The run's LLM calls through the relay.")
    unjudged: bool = Field(
        default=False,
        description="No LLM judge read the run (its judge check skipped or never ran).",
    )


class LlmTotals(Record):
    """A row's LLM use, summed over its runs that went through the relay."""

    runs: int = Field(description="Runs with metered LLM calls.")
    calls: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Usd = Decimal(0)

    @property
    def cost_per_run(self) -> Decimal:
        return self.cost_usd / self.runs if self.runs else Decimal(0)


class BenchmarkScore(Record):
    """A row's score on one benchmark of its section."""

    score: float = Field(
        description="Percent: mean over seeds of the mean over base models of the cells present."
    )
    n_cells: int = Field(description="Runs behind the score (repeats of a cell included).")
    fallbacks: int = Field(0, description="Of those, runs that took the base model's score.")


class LeaderboardRow(Record):
    """One agent configuration within one section of the leaderboard."""

    label: str = Field(
        description="`config.label()`, plus `[config.detail()]` where the label alone is shared"
        " by several configurations of the board."
    )
    config: AgentConfig = Field(description="The configuration this row stands for.")
    average: float | None = Field(
        description="Weighted average in percent, mean over complete seeds; None if no seed has"
        " every cell of the section's grid."
    )
    std: float | None = Field(None, description="Sample std of the average over complete seeds.")
    seeds: list[int] = Field(description="Seeds with at least one run in this section.")
    complete_seeds: list[int] = Field(description="Seeds with every cell of the grid.")
    n_runs: int = Field(description="Runs counted in this row.")
    benchmarks: dict[str, BenchmarkScore] = Field(description="Benchmark id → its score.")
    fallbacks: dict[FallbackSource, int] = Field(
        description="Runs that took the base model's score, per cause."
    )
    cells: list[LeaderboardCell] = Field(description="Every run of the row, with its source.")
    missing: list[CellKey] = Field(
        default_factory=list, description="Grid cells without a run, for seeds of the row."
    )
    llm: LlmTotals | None = Field(None, description="LLM calls, tokens and dollars of the row.")

    @property
    def n_fallbacks(self) -> int:
        return sum(self.fallbacks.values())

    @property
    def n_unjudged(self) -> int:
        return sum(1 for c in self.cells if c.unjudged)

    @property
    def fallback_cells(self) -> list[LeaderboardCell]:
        return [c for c in self.cells if c.source != "evaluated"]


class LeaderboardSection(Record):
    """The rows over one set of benchmarks that share a weighting (DESIGN §6)."""

    weighting: Weighting = Field(description="How the section's weights were derived.")
    weights: dict[str, float] = Field(description="Benchmark id → weight; they sum to 1.")
    base_models: list[str] = Field(description="Base models of the grid (seen in the section).")
    rows: list[LeaderboardRow] = Field(description="Best average first; no average last.")

    @property
    def benchmarks(self) -> list[str]:
        return sorted(self.weights)


class UnreadableRun(Record):
    """A run directory whose run.json could not be loaded."""

    path: str = Field(description="The run directory, relative to the scanned results dir.")
    reason: str = Field(description="One line naming the file and the problem.")


class LeftOutRun(Record):
    """A readable run without an outcome: failed, or still in progress (or interrupted)."""

    run_id: str
    label: str = Field(description="`AgentConfig.label()` of the run.")
    benchmark: str
    base_model: str
    seed: int
    stage: StageName | None = Field(
        None, description="The failed stage, or the first stage not done."
    )
    reason: str = Field(description="The stage's error message, or what the run waits for.")
    suite: str | None = Field(default=None, description="The suite the run follows.")


class Leaderboard(Versioned):
    """The report over a results dir: one section per weighting, and every run left out."""

    suite: str | None = Field(
        default=None, description="The suite (catalog.suites) the board is built for."
    )
    sections: list[LeaderboardSection] = Field(
        description="Published-gap (`paper`) section first, then the `uniform` one, if any."
    )
    unreadable: list[UnreadableRun] = Field(
        default_factory=list, description="Runs whose run.json cannot be read."
    )
    failed: list[LeftOutRun] = Field(
        default_factory=list, description="Runs with a failed stage and no outcome."
    )
    in_progress: list[LeftOutRun] = Field(
        default_factory=list, description="Runs without an outcome yet: running or interrupted."
    )
    other_suite: list[LeftOutRun] = Field(
        default_factory=list,
        description="Runs of another suite, or of an official benchmark the suite leaves out.",
    )
    baselines: str | None = Field(
        default=None, description="Where the base and instruct scores (weights) came from."
    )
    official: bool = Field(
        default=False, description="Built with `--official`: runs no LLM judge read left out."
    )
    unjudged: list[LeftOutRun] = Field(
        default_factory=list, description="Runs left out of an official board: no LLM judge."
    )
