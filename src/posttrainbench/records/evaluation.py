"""One evaluation of a model on a benchmark: seeds, ladder attempts, sampling, judge cost."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from posttrainbench.records.base import Record, Versioned

EvalAttemptOutcome = Literal["ok", "pathology", "infrastructure", "fatal", "timeout"]


class EvalAttempt(Record):
    """One try of an evaluation on the max-token ladder."""

    step: int = Field(ge=1, description="Ladder step (1 = the benchmark's longest max_tokens).")
    max_tokens: int
    outcome: EvalAttemptOutcome
    message: str | None = None
    duration_s: float | None = None


class JudgeUsage(Record):
    """What an LLM judge cost an evaluation; failed judgments stay in the denominator."""

    model: str
    calls: int = 0
    cached: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None


class SamplingDefaults(Record):
    """The sampling an evaluation used: the model's own generation config, allow-listed fields
    only, over vLLM's neutral defaults (evaluate/generation.py)."""

    source: str = Field(description="generation_config.json, config.json or none.")
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = Field(default=0, description="0: no top-k.")
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    greedy: bool = False
    used: list[str] = Field(default_factory=list, description="Allow-listed fields read.")
    ignored: list[str] = Field(default_factory=list, description="Fields read and not used.")
    note: str | None = None


class SeedScore(Record):
    """One evaluation seed's result; a failed seed has an error and no score."""

    seed: int
    score: float | None = Field(default=None, ge=0, le=1)
    n_samples: int = 0
    n_failed: int = 0
    log_file: str | None = None
    error: str | None = None


class EvalMetrics(Versioned):
    """eval/metrics.json: one evaluation of one model on one benchmark split."""

    benchmark: str
    benchmark_version: str | None = None
    split: str
    metric: str = Field("accuracy", description="The scorer metric the score is read from.")
    score: float = Field(ge=0, le=1, description="Mean over the seeds that succeeded.")
    n_samples: int = Field(description="Samples scored per seed (the denominator of one seed).")
    n_failed: int = Field(
        default=0, description="Samples that errored or whose judgment failed, over scored seeds."
    )
    model_path: str
    log_file: str | None = None
    params: dict[str, str | int | float | None] = Field(default_factory=dict)
    backend: str = "hf"
    template_family: str | None = None
    decoding: dict[str, float | int | None] = Field(default_factory=dict)
    max_tokens: int | None = None
    ladder_step: int | None = Field(
        default=None, description="The ladder step that produced the score."
    )
    attempts: list[EvalAttempt] = Field(default_factory=list)
    seed: int = 0
    suite: str | None = Field(default=None, description="The suite whose seed policy applied.")
    sampling: SamplingDefaults | None = None
    seeds: list[SeedScore] = Field(
        default_factory=list, description="Each evaluation seed; `score`: the mean of the scored."
    )
    datasets: list[str] = Field(default_factory=list, description="Data sources and revisions.")
    judge: JudgeUsage | None = None
    duration_s: float | None = None
