"""GSM8K: 1,319 grade-school math problems, 10-shot, the last number compared exactly.

Data: HF `openai/gsm8k`, config `main` (`main/test-*.parquet`, `main/train-*.parquet`), at the
revision inspect_evals pins. The ten few-shot examples are the ones inspect_evals' `gsm8k`
(06001a83) draws: the first ten rows of the train split shuffled by `datasets`'
`Dataset.shuffle(seed=42)`, i.e. the permutation `numpy.random.default_rng(42)` gives. They go
in a system message before each problem, each "question, Reasoning:, worked solution (its
`<<…>>` calculator notes kept), ANSWER: n", as inspect_evals writes them. They are part of every
sample, so the items exported to the agent's workspace are self-contained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from posttrainbench.evaluate.benchmarks.base import Benchmark, TaskOptions, seeded_generate
from posttrainbench.evaluate.benchmarks.math_common import PROMPT, exact_number

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.dataset import Sample

FEWSHOT_SEED = 42


def split_answer(answer: str) -> tuple[str, str]:
    """(worked solution, final answer) of a GSM8K answer, split at its last `####` as
    inspect_evals splits it; the solution keeps its calculator notes."""
    reasoning, _, final = answer.rpartition("####")
    return reasoning.strip(), final.strip()


def target(answer: str) -> str:
    """The number an answer is scored against: the final answer without thousands commas."""
    return split_answer(answer)[1].replace(",", "")


def fewshot_indices(n_train: int, k: int, seed: int = FEWSHOT_SEED) -> list[int]:
    """The train rows `Dataset.shuffle(seed=seed)` puts first: datasets permutes the row
    indices with `numpy.random.default_rng(seed).permutation(n)`."""
    import numpy as np

    return [int(i) for i in np.random.default_rng(seed).permutation(n_train)[:k]]


def fewshot_text(rows: list[dict[str, Any]]) -> str:
    shots = []
    for row in rows:
        reasoning, final = split_answer(row["answer"])
        shots.append(f"{row['question']}\n\nReasoning:\n{reasoning}\n\nANSWER: {final}")
    return "\n\n".join(shots)


class Gsm8k(Benchmark):
    input_fields = ("question",)

    def _rows(self, split: str) -> list[dict[str, Any]]:
        from posttrainbench.evaluate.data import hub_rows

        return hub_rows(self.hub_source(), (f"main/{split}-*.parquet",), self.info.id)

    def fewshot(self) -> list[dict[str, Any]]:
        train = self._rows("train")
        return [train[i] for i in fewshot_indices(len(train), self.info.few_shot)]

    def samples(self, split: str) -> list[Sample]:
        from inspect_ai.dataset import Sample
        from inspect_ai.model import ChatMessageSystem, ChatMessageUser

        shots = fewshot_text(self.fewshot())
        samples = []
        for i, row in enumerate(self._rows(split)):
            messages: list[Any] = [ChatMessageSystem(content=shots)] if shots else []
            messages.append(ChatMessageUser(content=PROMPT.format(prompt=row["question"])))
            samples.append(
                Sample(
                    id=f"gsm8k-{split}-{i}",
                    input=messages,
                    target=target(row["answer"]),
                    metadata={"question": row["question"]},
                )
            )
        return samples

    def test_texts(self, split: str = "test") -> Any:
        for item, (question, answer) in self.test_parts(split):
            yield item, f"{question}\n{answer}"

    def test_parts(self, split: str = "test") -> Any:
        for i, row in enumerate(self._rows(split)):
            yield f"gsm8k-{split}-{i}", (row["question"], row["answer"])

    def build(self, samples: list[Sample], opts: TaskOptions) -> Task:
        from inspect_ai import Task
        from inspect_ai.dataset import MemoryDataset

        return Task(
            name="gsm8k",
            dataset=MemoryDataset(samples, name="gsm8k"),
            solver=seeded_generate(opts.seed),
            scorer=exact_number(),
        )
