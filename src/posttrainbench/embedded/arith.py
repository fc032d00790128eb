"""`arith`: the embedded toy benchmark — two-number addition and subtraction.

Items are drawn without replacement from all (a, op, b) with 0 ≤ a, b < 30, shuffled by a fixed
seed and cut into three disjoint splits: `test` (held out; the harness evaluates on it; the agent
must not train on it), `dev` (agent-visible, for model selection) and `train` (agent-visible, for
training). Scoring extracts the first integer of the completion and compares it exactly.

    ptb run --agent recipe --base-model ptb-tiny --benchmark arith --budget 5m
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

SEED = 20260308
OPERAND_RANGE = 30
SPLIT_SIZES = {"test": 300, "dev": 200}  # train takes the rest (1,300 items)
MAX_TOKENS = 6
PUBLIC_SPLITS = ("train", "dev")

_INT = re.compile(r"-?\d+")


class ArithItem(BaseModel):
    id: str
    question: str
    answer: str


def _universe() -> list[ArithItem]:
    items = []
    for a in range(OPERAND_RANGE):
        for b in range(OPERAND_RANGE):
            for op, value in (("+", a + b), ("-", a - b)):
                items.append(
                    ArithItem(
                        id=f"{a}{op}{b}", question=f"What is {a} {op} {b}?", answer=str(value)
                    )
                )
    random.Random(SEED).shuffle(items)
    return items


def split_items(split: str) -> list[ArithItem]:
    items = _universe()
    n_test, n_dev = SPLIT_SIZES["test"], SPLIT_SIZES["dev"]
    bounds = {"test": (0, n_test), "dev": (n_test, n_test + n_dev), "train": (n_test + n_dev, None)}
    if split not in bounds:
        raise ValueError(f"arith has no split {split!r}; splits: {', '.join(bounds)}")
    lo, hi = bounds[split]
    return items[lo:hi]


def extract_answer(completion: str) -> str | None:
    match = _INT.search(completion)
    return match.group(0) if match else None


def write_public_data(dest: Path) -> Path:
    """Write the agent-visible splits as JSONL (question/answer) into dest; return dest."""
    dest.mkdir(parents=True, exist_ok=True)
    for split in PUBLIC_SPLITS:
        path = dest / f"{split}.jsonl"
        if not path.is_file():
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(i.model_dump_json() + "\n" for i in split_items(split)))
            tmp.replace(path)
    readme = dest / "README.md"
    if not readme.is_file():
        readme.write_text(
            "arith training data: one JSON object per line with `question` and `answer`.\n"
            "train.jsonl is for training, dev.jsonl for model selection. The test split is "
            "held out by the harness.\n"
        )
    return dest


def arith_task(split: str = "test", limit: int | None = None) -> Any:
    """The inspect-ai task: greedy generation, first-integer exact match."""
    from inspect_ai import Task
    from inspect_ai.dataset import MemoryDataset, Sample
    from inspect_ai.model import GenerateConfig
    from inspect_ai.solver import generate

    items = split_items(split)[:limit] if limit else split_items(split)
    samples = [Sample(id=i.id, input=i.question, target=i.answer) for i in items]
    return Task(
        name=f"arith_{split}",
        dataset=MemoryDataset(samples, name=f"arith-{split}"),
        solver=generate(),
        scorer=first_integer_match(),
        config=GenerateConfig(max_tokens=MAX_TOKENS, stop_seqs=["\n"]),
        version=1,
    )


def first_integer_match() -> Any:
    from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr
    from inspect_ai.solver import TaskState

    @scorer(metrics=[accuracy(), stderr()])
    def _first_integer_match() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            answer = extract_answer(state.output.completion)
            return Score(
                value=CORRECT if answer == target.text else INCORRECT,
                answer=answer,
                explanation=state.output.completion,
            )

        return score

    return _first_integer_match()
