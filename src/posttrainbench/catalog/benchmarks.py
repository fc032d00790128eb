"""Benchmarks a run can target: the seven official ids and the embedded `arith`.

Each entry declares what a researcher needs to trust a score: the data and its revision, the
metric, the max-token ladder, what the scorer executes, the agent's dev default and what training
data is allowed. Sampling is the model's own (evaluate/generation.py) and seed counts are the
suite's (catalog/suites.py), not the benchmark's. The code lives in the implementation named
by `impl` (`module:Class`, a `posttrainbench.evaluate.benchmarks.base.Benchmark`), imported only
when a benchmark is evaluated, so listing the catalog stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, cast

from pydantic import BaseModel, ConfigDict, Field

from posttrainbench.errors import NotEvaluableError
from posttrainbench.registry import import_ref

if TYPE_CHECKING:
    from posttrainbench.evaluate.benchmarks.base import Benchmark


class HubSource(BaseModel):
    """A dataset (or model) repository on the Hugging Face hub, read from the local hub cache."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["hub"] = "hub"
    repo: str
    revision: str | None = None  # None: whatever `main` pointed at when it was downloaded
    config: str | None = None
    split: str | None = None
    files: tuple[str, ...] = ()  # glob patterns inside the snapshot; empty: all of it
    repo_type: Literal["dataset", "model"] = "dataset"
    license: str = ""
    gated: bool = False

    @property
    def label(self) -> str:
        return f"hf:{self.repo}" + (f"@{self.revision[:12]}" if self.revision else "")


class UrlSource(BaseModel):
    """A file that is not on the hub, fetched from its upstream URL and pinned by checksum."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["url"] = "url"
    name: str  # file name inside <cache>/data/<benchmark>/
    url: str
    sha256: str  # "": not pinnable yet; the digest of the first fetch is kept and enforced
    license: str = ""

    @property
    def label(self) -> str:
        pin = f"sha256 {self.sha256[:12]}" if self.sha256 else "not pinned: first fetch kept"
        return f"{self.url} ({pin})"


DataSource = Annotated[HubSource | UrlSource, Field(discriminator="kind")]


class LadderStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_tokens: int = Field(ge=1)
    attempts: int = Field(ge=1)


def ladder(first: int, second: int, third: int) -> tuple[LadderStep, ...]:
    """The reference's max-token ladder: 4, 3 and 2 attempts at decreasing lengths."""
    return (
        LadderStep(max_tokens=first, attempts=4),
        LadderStep(max_tokens=second, attempts=3),
        LadderStep(max_tokens=third, attempts=2),
    )


class BenchmarkInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    display_name: str
    version: str = "1"
    impl: str | None = None  # "module:Class" implementing evaluate.benchmarks.base.Benchmark
    splits: tuple[str, ...] = ("test",)
    sources: tuple[DataSource, ...] = ()
    n_items: int | None = None  # size of the full test set
    public_data: str | None = None  # "module:writer(dest) -> Path" for agent-allowed data
    metric: str = "accuracy"  # the scorer metric that is the benchmark's score
    metric_label: str = "accuracy"  # what the metric means, for reports
    few_shot: int = 0
    max_tokens: tuple[LadderStep, ...] = ladder(4000, 3000, 2000)
    dev_limit: int | None = None  # the agent's evaluate.py default `--limit`; None: all
    shuffle_limit: bool = False  # `--limit N` takes N items of a seeded shuffle, not the first N
    executes_model_output: bool = False
    judged: bool = False
    tools: bool = False  # items carry tool definitions (the template's tool variant is used)
    allowed_training: str = "anything that does not overlap the test set"
    # Splits of its hub sources an agent may use; empty: every split is the test set.
    public_splits: tuple[str, ...] = ()
    eval_timeout_s: int = 4 * 3600  # the harness's evaluation of final_model on the test split
    description: str = ""

    @property
    def evaluable(self) -> bool:
        return self.impl is not None

    def implementation(self) -> Benchmark:
        if self.impl is None:
            raise NotEvaluableError(
                f"benchmark {self.id!r} is registered but not yet evaluable",
                "its inspect-ai task is not implemented yet; try --benchmark arith",
            )
        cls = cast("type[Benchmark]", import_ref(self.impl))
        impl = cls(self)
        return impl

    def write_public_data(self, dest: Path) -> Path | None:
        if self.public_data is None:
            return None
        writer = cast("Callable[[Path], Path]", import_ref(self.public_data))
        path = writer(dest)
        return path


_IMPL = "posttrainbench.evaluate.benchmarks"
_MATH_TRAINING = (
    "any data that does not overlap the test set; no test items, paraphrases or answers"
)

OFFICIAL = [
    BenchmarkInfo(
        id="aime2025",
        display_name="AIME 2025",
        impl=f"{_IMPL}.aime2025:Aime2025",
        sources=(
            HubSource(
                repo="math-ai/aime25",
                revision="563bb8404243c5f09de6ec262f2db674fe5bce9b",
                split="test",
                license="MIT",
            ),
        ),
        n_items=30,
        max_tokens=ladder(16000, 12000, 8000),
        description="30 AIME 2025 problems; the final integer answer, exact integer equality.",
        allowed_training=_MATH_TRAINING + " (nor AIME 2025 solutions)",
    ),
    BenchmarkInfo(
        id="arenahardwriting",
        display_name="Arena-Hard Writing",
        impl=f"{_IMPL}.arenahardwriting:ArenaHardWriting",
        sources=(
            UrlSource(
                name="question.jsonl",
                url="https://raw.githubusercontent.com/lmarena/arena-hard-auto/main/data/"
                "arena-hard-v2.0/question.jsonl",
                sha256="a75cef6623db6b27aec810497b059f0659705d7ff48dcbccc5bd5b130728ac73",
                license="Apache-2.0",
            ),
            UrlSource(
                name="Qwen3-1.7B.jsonl",
                url="https://raw.githubusercontent.com/aisa-group/PostTrainBench/"
                "9082063a62e10e040f1acacdec2ccfc1467e0c00/src/eval/tasks/arenahardwriting/"
                "evaluation_code/data/arena-hard-v2.0/model_answer/Qwen3-1.7B.jsonl",
                sha256="87a72bb89edfd05fc8dd32152750649e1bab60ba1b62ebcd055610a729023c30",
                license="Apache-2.0",
            ),
        ),
        n_items=250,
        metric="score",
        metric_label="pairwise score vs Qwen3-1.7B",
        max_tokens=ladder(16384, 12288, 8192),
        dev_limit=32,
        shuffle_limit=True,
        judged=True,
        description="250 Arena-Hard v2.0 creative-writing prompts, judged pairwise (two games, "
        "A/B swapped) against Qwen3-1.7B's fixed answers.",
        allowed_training="any writing data that does not contain the Arena-Hard v2.0 prompts",
    ),
    BenchmarkInfo(
        id="bfcl",
        display_name="BFCL",
        impl=f"{_IMPL}.bfcl:Bfcl",
        sources=(
            HubSource(
                repo="gorilla-llm/Berkeley-Function-Calling-Leaderboard",
                revision="1bf8bbc3c0e35d04d00339c223a3fd653aa195ac",
                license="Apache-2.0",
            ),
        ),
        n_items=100,
        max_tokens=ladder(16000, 12000, 8000),
        tools=True,
        description="100 BFCL exec_simple items: one tool call whose name and arguments equal "
        "the target.",
        allowed_training="function-calling data that does not overlap the test set; the hub "
        "dataset's split named `train` IS the test set: training on it is cheating",
    ),
    BenchmarkInfo(
        id="gpqamain",
        display_name="GPQA main",
        impl=f"{_IMPL}.gpqamain:GpqaMain",
        sources=(
            HubSource(repo="Idavidrein/gpqa", config="gpqa_main", license="CC-BY-4.0", gated=True),
        ),
        n_items=448,
        max_tokens=ladder(16000, 12000, 8000),
        dev_limit=50,
        description="448 GPQA main questions, chain-of-thought multiple choice, choices "
        "shuffled with a seed per item, letter match.",
        allowed_training="science QA that does not overlap GPQA",
    ),
    BenchmarkInfo(
        id="gsm8k",
        display_name="GSM8K",
        impl=f"{_IMPL}.gsm8k:Gsm8k",
        sources=(
            HubSource(
                repo="openai/gsm8k",
                revision="cc7b047b6e5bb11b4f1af84efc572db110a51b3c",
                config="main",
                files=("main/*",),
                license="MIT",
            ),
        ),
        n_items=1319,
        few_shot=10,
        max_tokens=ladder(4000, 3000, 2000),
        dev_limit=150,
        description="1,319 GSM8K test problems, 10-shot from train; final number, exact numeric "
        "equality.",
        allowed_training="the GSM8K train split (explicitly allowed) and any data that does not "
        "overlap the test split",
        public_splits=("train",),
    ),
    BenchmarkInfo(
        id="healthbench",
        display_name="HealthBench",
        impl=f"{_IMPL}.healthbench:HealthBench",
        sources=(
            UrlSource(
                name="healthbench_oss_eval.jsonl",
                url="https://openaipublic.blob.core.windows.net/simple-evals/healthbench/"
                "2025-05-07-06-14-12_oss_eval.jsonl",
                sha256="",  # no published digest: trusted on first use (DEVIATIONS.md)
                license="MIT",
            ),
        ),
        n_items=245,
        metric="score",
        metric_label="rubric score",
        max_tokens=ladder(16384, 12288, 8192),
        dev_limit=32,
        shuffle_limit=True,
        judged=True,
        description="The reference's 245 multi-turn HealthBench conversations (by prompt id), "
        "graded per rubric criterion by a judge.",
        allowed_training="medical dialogue data that does not contain HealthBench conversations "
        "or their ideal completions",
    ),
    BenchmarkInfo(
        id="humaneval",
        display_name="HumanEval",
        impl=f"{_IMPL}.humaneval:HumanEval",
        sources=(
            HubSource(
                repo="openai/openai_humaneval",
                revision="7dce6050a7d6d172f3cc5c32aa97f52fa1a2e544",
                license="MIT",
            ),
        ),
        n_items=164,
        max_tokens=ladder(4000, 3000, 2000),
        dev_limit=150,
        executes_model_output=True,
        description="164 HumanEval problems; pass@1 by running each problem's tests on the "
        "completion in a sandbox.",
        allowed_training="code data that does not contain HumanEval problems (e.g. not "
        "CodeFeedback-Filtered-Instruction, which holds HumanEval-derived problems)",
    ),
]

EMBEDDED = [
    BenchmarkInfo(
        id="arith",
        display_name="Arith (embedded)",
        impl="posttrainbench.embedded.arith:Arith",
        splits=("test", "dev"),
        public_data="posttrainbench.embedded.arith:write_public_data",
        n_items=300,
        max_tokens=(LadderStep(max_tokens=6, attempts=2),),
        eval_timeout_s=900,
        description="Two-number addition/subtraction; train/dev public, test held out.",
        allowed_training="data/train.jsonl and data/dev.jsonl; the test split is held out",
    ),
]
