"""Published protocol versions of PostTrainBench as data: which benchmarks, weights, seeds, judges.

A suite is what a score is comparable with. `ptb-v1.2` (the default, 30 Sep 2026) has six
benchmarks (BFCL dropped), several evaluation seeds and a contamination judge taken by majority of
three; `ptb-v1.0` has the paper's seven benchmarks, one seed and one judge run. The weights are
derived from the baseline table by the published formula (`results.scoring`); `factors` holds the
website's own numbers, which the derivation is checked against. Runs, sweeps and reports name
the suite they use; a board never mixes suites.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from posttrainbench.errors import ConfigError
from posttrainbench.registry import Registry

DecodingRule = Literal["generation_config"]
# generation_config: sampling from the model's own generation_config.json, allow-listed fields
# only (temperature, top_p, top_k, min_p, repetition_penalty), greedy where it does not sample.


class SeedPolicy(BaseModel):
    """How many evaluation seeds a benchmark gets; its score is their mean."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: int = Field(ge=1, description="Seeds evaluated for a model that samples.")
    once_if_greedy: bool = Field(
        default=True,
        description="A model that decodes greedily is evaluated once (all seeds would agree).",
    )
    shuffles_choices: bool = Field(
        default=False, description="The seed also shuffles the answer choices (GPQA)."
    )

    def seeds_for(self, *, greedy: bool) -> int:
        return 1 if greedy and self.once_if_greedy else self.count


ONE_SEED = SeedPolicy(count=1)


class JudgePolicy(BaseModel):
    """How the LLM judges are used."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    contamination_runs: int = Field(
        default=1, ge=1, description="Runs of the contamination judge per trajectory."
    )
    contamination_flag_at: int = Field(
        default=1, ge=1, description="Runs that must flag for the verdict to flag."
    )
    one_model: bool = Field(
        default=False, description="Every judge (grading and contamination) is the same model."
    )


class Suite(BaseModel):
    """One published version of the benchmark protocol."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    published: str = Field(description="Date the version was published (ISO).")
    benchmarks: tuple[str, ...]
    factors: dict[str, float] = Field(
        description="The website's published weights, to check our derivation against."
    )
    factors_source: str = Field(description="Where `factors` were read.")
    seeds: dict[str, SeedPolicy] = Field(
        default_factory=dict, description="Benchmark → seed policy; absent: one seed."
    )
    decoding: DecodingRule = "generation_config"
    judges: JudgePolicy = JudgePolicy()
    description: str = ""

    def seed_policy(self, benchmark: str) -> SeedPolicy:
        return self.seeds.get(benchmark, ONE_SEED)

    def admits(self, benchmark: str) -> bool:
        """Whether runs of `benchmark` belong to this suite: its own benchmarks and the
        embedded ones (in no suite), never an official benchmark the suite leaves out."""
        return benchmark in self.benchmarks or not suites_with(benchmark)


FIVE_OR_GREEDY = SeedPolicy(count=5)

V1_2 = Suite(
    id="ptb-v1.2",
    published="2026-09-30",
    benchmarks=("aime2025", "arenahardwriting", "gpqamain", "gsm8k", "healthbench", "humaneval"),
    factors={
        "aime2025": 0.24480059495473774,
        "arenahardwriting": 0.09763625841479416,
        "gpqamain": 0.242731857532585,
        "gsm8k": 0.10113359431088526,
        "healthbench": 0.1989911302939207,
        "humaneval": 0.11470656449307715,
    },
    factors_source="aisa-group/posttrainbench-website@202491e2 data/factors-v1.2.json",
    seeds={
        "gpqamain": SeedPolicy(count=5, once_if_greedy=False, shuffles_choices=True),
        "aime2025": FIVE_OR_GREEDY,
        "gsm8k": FIVE_OR_GREEDY,
        "humaneval": FIVE_OR_GREEDY,
    },
    judges=JudgePolicy(contamination_runs=3, contamination_flag_at=2, one_model=True),
    description="Six benchmarks (BFCL dropped), several evaluation seeds, HumanEval answers "
    "checked in isolation, contamination judge by majority of three.",
)

V1_0 = Suite(
    id="ptb-v1.0",
    published="2026-03-10",
    benchmarks=(
        "aime2025",
        "arenahardwriting",
        "bfcl",
        "gpqamain",
        "gsm8k",
        "healthbench",
        "humaneval",
    ),
    factors={
        "aime2025": 0.226536549919078,
        "arenahardwriting": 0.0903518275042778,
        "bfcl": 0.0746078457817324,
        "gpqamain": 0.22462215653948,
        "gsm8k": 0.0935882347031865,
        "healthbench": 0.184144830733019,
        "humaneval": 0.106148554819225,
    },
    factors_source="aisa-group/posttrainbench-website@49cdae1c data/factors.json",
    description="The paper's seven benchmarks, one evaluation seed, one contamination judge run.",
)

DEFAULT_SUITE = V1_2.id
SUITES: Registry[Suite] = Registry("suite", Suite)
for _s in (V1_2, V1_0):
    SUITES.register(_s.id, _s)


def suite(name: str | None) -> Suite:
    """The suite of that id (the default where None); unknown ids raise with a suggestion."""
    return SUITES.get(name or DEFAULT_SUITE)


def suites_with(benchmark: str) -> list[str]:
    """Ids of the suites that include `benchmark` (none for an embedded one such as arith)."""
    return [s.id for _, s in SUITES if benchmark in s.benchmarks]


def suite_for_run(name: str | None, benchmark: str) -> Suite:
    """The suite a new run follows; refuses an official benchmark the suite leaves out (the
    embedded benchmarks are allowed in every suite)."""
    chosen = suite(name)
    if not chosen.admits(benchmark):
        holders = suites_with(benchmark)
        raise ConfigError(
            f"benchmark {benchmark} is not in suite {chosen.id} ({', '.join(chosen.benchmarks)})",
            f'pass --suite {holders[0]} (in a sweep file: suite = "{holders[0]}")',
        )
    return chosen
