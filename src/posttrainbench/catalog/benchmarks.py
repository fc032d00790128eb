"""Benchmarks a run can target: the seven official ids and the embedded `arith`.

A benchmark is evaluable when it names an inspect-ai task factory `(split, limit) -> Task`.
The official seven are registered now so that names, display names and weights are stable;
their evaluation arrives with their tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from posttrainbench.errors import NotEvaluableError
from posttrainbench.registry import import_ref


class BenchmarkInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    display_name: str
    task: str | None = None  # "module:factory(split, limit) -> inspect_ai.Task"
    splits: tuple[str, ...] = ("test",)
    public_data: str | None = None  # "module:writer(dest) -> Path" for agent-allowed data
    metric: str = "accuracy"  # the scorer metric that is the benchmark's score
    eval_timeout_s: int = 4 * 3600  # the harness's evaluation of final_model on the test split
    description: str = ""

    @property
    def evaluable(self) -> bool:
        return self.task is not None

    def task_factory(self) -> Callable[..., Any]:
        if self.task is None:
            raise NotEvaluableError(
                f"benchmark {self.id!r} is registered but not yet evaluable",
                "its inspect-ai task is not implemented yet; try --benchmark arith",
            )
        return _callable(self.task)

    def write_public_data(self, dest: Path) -> Path | None:
        if self.public_data is None:
            return None
        path: Path = _callable(self.public_data)(dest)
        return path


def _callable(ref: str) -> Callable[..., Any]:
    obj = import_ref(ref)
    if not callable(obj):
        raise TypeError(f"{ref} is not callable")
    return obj


OFFICIAL = [
    BenchmarkInfo(id="aime2025", display_name="AIME 2025"),
    BenchmarkInfo(id="arenahardwriting", display_name="Arena-Hard Writing"),
    BenchmarkInfo(id="bfcl", display_name="BFCL"),
    BenchmarkInfo(id="gpqamain", display_name="GPQA main"),
    BenchmarkInfo(id="gsm8k", display_name="GSM8K"),
    BenchmarkInfo(id="healthbench", display_name="HealthBench"),
    BenchmarkInfo(id="humaneval", display_name="HumanEval"),
]

EMBEDDED = [
    BenchmarkInfo(
        id="arith",
        display_name="Arith (embedded)",
        task="posttrainbench.embedded.arith:arith_task",
        splits=("test", "dev"),
        public_data="posttrainbench.embedded.arith:write_public_data",
        eval_timeout_s=900,
        description="Two-number addition/subtraction; train/dev public, test held out.",
    ),
]
