"""AIME 2025: 30 problems, the last number of the output compared exactly.

Data: HF `math-ai/aime25` (`test.jsonl`: `problem`, `answer`, `id`), at the revision
inspect_evals pins. Zero-shot, with the prompt of inspect_evals' AIME solver (`aime2024_solver`,
whose template differs from GSM8K's: a line break after the first sentence, no "Reasoning:" cue);
it asks for `ANSWER: n`; `\\boxed{n}` is unwrapped before the last number is read, as in
inspect_evals' AIME scorer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from posttrainbench.evaluate.benchmarks.base import Benchmark, TaskOptions, seeded_generate
from posttrainbench.evaluate.benchmarks.math_common import exact_number

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.dataset import Sample

PROMPT = (
    "Solve the following math problem step by step.\nThe last line of your response should be "
    'of the form "ANSWER: $ANSWER" (without quotes) where $ANSWER is the answer to the '
    "problem.\n\n{prompt}\n\n"
    'Remember to put your answer on its own line at the end in the form "ANSWER: $ANSWER" '
    "(without quotes) where $ANSWER is the answer to the problem, and you do not need to use "
    "a \\boxed command."
)


class Aime2025(Benchmark):
    input_fields = ("problem",)

    def samples(self, split: str) -> list[Sample]:
        from inspect_ai.dataset import Sample

        from posttrainbench.evaluate.data import hub_rows

        rows = hub_rows(self.hub_source(), (f"{split}.jsonl", f"**/{split}*"), self.info.id)
        return [
            Sample(
                id=f"aime2025-{row.get('id', i)}",
                input=PROMPT.format(prompt=row["problem"]),
                target=str(row["answer"]).strip(),
                metadata={"problem": row["problem"]},
            )
            for i, row in enumerate(rows)
        ]

    def build(self, samples: list[Sample], opts: TaskOptions) -> Task:
        from inspect_ai import Task
        from inspect_ai.dataset import MemoryDataset

        return Task(
            name="aime2025",
            dataset=MemoryDataset(samples, name="aime2025"),
            solver=seeded_generate(opts.seed),
            scorer=exact_number(unbox=True),
        )
