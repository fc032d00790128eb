"""GPQA main: 448 graduate-level multiple-choice questions, chain of thought, letter match.

Data: HF `Idavidrein/gpqa` (gated), config `gpqa_main` (`gpqa_main.csv`: `Question`, `Correct
Answer`, `Incorrect Answer 1..3`, `Record ID`). The raw file lists the correct answer first; the
four choices are shuffled with a seed derived from the item's record id, so the exam is the
same on every build and the right letter is spread over A–D (the reference shuffled unseeded,
so scores moved between identical runs). Where the suite's seed also shuffles the choices
(ptb-v1.2), `TaskOptions.choice_seed` reorders them per evaluation seed (seed 0: the fixed
order). The prompt is inspect's `multiple_choice(cot=True)` template as the reference ran it
(letters listed "A,B,C,D"); the answer is read by inspect's `multiple_choice` rule
(evaluate/answers.py): no `ANSWER: X` line, no credit.
"""

from __future__ import annotations

import csv
import random
from typing import TYPE_CHECKING, Any

from posttrainbench.evaluate.benchmarks.base import (
    Benchmark,
    TaskOptions,
    sample_seed,
    seeded_generate,
)

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.dataset import Sample

LETTERS = "ABCD"
PROMPT = (
    "Answer the following multiple choice question. The last line of your response should be "
    "of the following format: 'ANSWER: $LETTER' (without quotes) where LETTER is one of A,B,C,D. "
    "Think step by step before answering.\n\n{question}\n\n{choices}"
)


def order_of(record_id: str, seed: int = 0) -> list[int]:
    """The item's choice order for this seed (seed 0: the fixed order of every build)."""
    order = list(range(4))
    random.Random(sample_seed(seed, f"gpqa:{record_id}")).shuffle(order)
    return order


def shuffled(
    record_id: str, correct: str, wrong: list[str], seed: int = 0
) -> tuple[list[str], str]:
    """The four choices in this item's order for `seed`, and the letter of the correct one."""
    choices = [correct, *wrong]
    order = order_of(record_id, seed)
    return [choices[i] for i in order], LETTERS[order.index(0)]


def reshuffled(sample: Sample, seed: int) -> Sample:
    """The sample with its choices in the order of evaluation seed `seed` (v1.2: the seed also
    shuffles the choices); works on exported inputs too (no target: none is set)."""
    rid = str(sample.id).removeprefix("gpqa-")
    current = list(sample.choices or [])
    raw = [""] * 4
    for k, i in enumerate(order_of(rid)):
        raw[i] = current[k]
    choices, letter = shuffled(rid, raw[0], raw[1:], seed)
    listed = "\n".join(f"{LETTERS[k]}) {c}" for k, c in enumerate(choices))
    question = str((sample.metadata or {}).get("question", ""))
    return sample.model_copy(
        update={
            "input": PROMPT.format(question=question, choices=listed),
            "choices": choices,
            "target": letter if sample.target else sample.target,
        }
    )


class GpqaMain(Benchmark):
    input_fields = ("question",)

    def _rows(self) -> list[dict[str, Any]]:
        from posttrainbench.evaluate.data import hub_snapshot, snapshot_files

        src = self.hub_source()
        files = snapshot_files(
            hub_snapshot(src, self.info.id), ("gpqa_main.csv", "**/gpqa_main.csv")
        )
        if not files:
            from posttrainbench.errors import DataUnavailableError

            raise DataUnavailableError(
                f"{src.label} has no gpqa_main.csv",
                f"run `ptb data prefetch --benchmarks {self.info.id}`",
            )
        with files[0].open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def samples(self, split: str) -> list[Sample]:
        from inspect_ai.dataset import Sample

        samples = []
        for i, row in enumerate(self._rows()):
            rid = row.get("Record ID") or str(i)
            wrong = [row[f"Incorrect Answer {k}"].strip() for k in (1, 2, 3)]
            choices, letter = shuffled(rid, row["Correct Answer"].strip(), wrong)
            listed = "\n".join(f"{LETTERS[k]}) {c}" for k, c in enumerate(choices))
            samples.append(
                Sample(
                    id=f"gpqa-{rid}",
                    input=PROMPT.format(question=row["Question"].strip(), choices=listed),
                    choices=choices,
                    target=letter,
                    metadata={"question": row["Question"].strip()},
                )
            )
        return samples

    def build(self, samples: list[Sample], opts: TaskOptions) -> Task:
        from inspect_ai import Task
        from inspect_ai.dataset import MemoryDataset

        if opts.choice_seed is not None:
            samples = [reshuffled(s, opts.choice_seed) for s in samples]
        return Task(
            name="gpqamain",
            dataset=MemoryDataset(samples, name="gpqamain"),
            solver=seeded_generate(opts.seed),
            scorer=letter_match(),
        )


def letter_match() -> Any:
    from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr
    from inspect_ai.solver import TaskState

    from posttrainbench.evaluate.answers import choice_letter

    @scorer(metrics=[accuracy(), stderr()], name="letter_match")
    def _letter_match() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            letter = choice_letter(state.output.completion, LETTERS)
            return Score(
                value=CORRECT if letter == target.text else INCORRECT,
                answer=letter,
                explanation=state.output.completion[-2000:],
            )

        return score

    return _letter_match()
