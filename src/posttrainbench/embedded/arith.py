"""`arith`: the embedded toy benchmark — two-number addition and subtraction.

Items are drawn without replacement from all (a, op, b) with 0 ≤ a, b < 30, shuffled and cut
into four disjoint parts: `test` (held out; the harness evaluates on it; the agent must not train
on it), `dev` (agent-visible, for model selection), `train` (agent-visible, for training) and a
withheld rest that nobody sees, so the test split is not the complement of the public ones.

The shuffle's seed is a random key kept in the harness's cache (`<cache>/secrets/arith.key`,
created on first use, mode 0600), never in this code: an agent that can read this module cannot
derive which items are held out. Inside a sandbox (`PTB_IN_SANDBOX` set) no key is ever created:
the public splits are read from the workspace's `data/` (`PTB_DATA_DIR`) and the test split is
refused. Scoring extracts the first integer of the completion and compares it exactly.

    ptb run --agent recipe --base-model ptb-tiny --benchmark arith --budget 5m
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from posttrainbench.evaluate.benchmarks.base import Benchmark, TaskOptions, seeded_generate

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.dataset import Sample

OPERAND_RANGE = 30
SPLIT_SIZES = {"test": 300, "dev": 200, "train": 1100}  # 200 of the 1,800 items are withheld
KEY_FILE = Path("secrets") / "arith.key"
KEY_ID_SUFFIX = ".key_id"
PUBLIC_SPLITS = ("train", "dev")

_INT = re.compile(r"-?\d+")


class ArithItem(BaseModel):
    id: str
    question: str
    answer: str


def _key_path() -> Path:
    from posttrainbench.config import load_settings

    return load_settings().cache_dir / KEY_FILE


def _key() -> str | None:
    """The harness's split key; created on first use, but never inside a sandbox."""
    path = _key_path()
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        if os.environ.get("PTB_IN_SANDBOX"):
            return None
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(16) + "\n")
    try:
        os.link(tmp, path)  # first writer wins; a concurrent one reads the winner's key
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text().strip()


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _universe(key: str) -> list[ArithItem]:
    items = []
    for a in range(OPERAND_RANGE):
        for b in range(OPERAND_RANGE):
            for op, value in (("+", a + b), ("-", a - b)):
                items.append(
                    ArithItem(
                        id=f"{a}{op}{b}", question=f"What is {a} {op} {b}?", answer=str(value)
                    )
                )
    random.Random(key).shuffle(items)
    return items


def _read_public(split: str) -> list[ArithItem]:
    from posttrainbench.errors import EvaluationError

    data = Path(os.environ.get("PTB_DATA_DIR", "data")) / f"{split}.jsonl"
    try:
        lines = data.read_text().splitlines()
    except OSError as exc:
        raise EvaluationError(
            f"cannot read arith's {split} split from {data}: {exc.strerror}",
            "run evaluate.py from the workspace, where data/ holds the public splits",
        ) from None
    return [ArithItem.model_validate_json(line) for line in lines if line.strip()]


def split_items(split: str) -> list[ArithItem]:
    if split not in SPLIT_SIZES:
        raise ValueError(f"arith has no split {split!r}; splits: {', '.join(SPLIT_SIZES)}")
    key = _key()
    if key is None:
        if split in PUBLIC_SPLITS:
            return _read_public(split)
        from posttrainbench.errors import EvaluationError

        raise EvaluationError(
            "arith's test split is held out by the harness and cannot be evaluated here",
            "use python evaluate.py --split dev; the harness scores final_model on test",
        )
    starts = dict(zip(SPLIT_SIZES, itertools.accumulate([0, *SPLIT_SIZES.values()]), strict=False))
    return _universe(key)[starts[split] : starts[split] + SPLIT_SIZES[split]]


def extract_answer(completion: str) -> str | None:
    match = _INT.search(completion)
    return match.group(0) if match else None


def write_public_data(dest: Path) -> Path:
    """Write the agent-visible splits as JSONL (question/answer) into dest; return dest."""
    dest.mkdir(parents=True, exist_ok=True)
    key = _key()
    if key is None:
        raise RuntimeError("arith's public data is written by the harness, not inside a sandbox")
    marker = dest.parent / f".{dest.name}{KEY_ID_SUFFIX}"  # beside: data/ is copied to the agent
    stale = not marker.is_file() or marker.read_text().strip() != key_id(key)
    for split in PUBLIC_SPLITS:
        path = dest / f"{split}.jsonl"
        if stale or not path.is_file():
            tmp = path.with_suffix(".tmp")
            tmp.write_text("".join(i.model_dump_json() + "\n" for i in split_items(split)))
            tmp.replace(path)
    marker.write_text(key_id(key) + "\n")
    readme = dest / "README.md"
    if not readme.is_file():
        readme.write_text(
            "arith training data: one JSON object per line with `question` and `answer`.\n"
            "train.jsonl is for training, dev.jsonl for model selection. The test split is "
            "held out by the harness.\n"
        )
    return dest


class Arith(Benchmark):
    """The inspect-ai task: greedy generation, first-integer exact match."""

    def samples(self, split: str) -> list[Sample]:
        from inspect_ai.dataset import Sample

        return [Sample(id=i.id, input=i.question, target=i.answer) for i in split_items(split)]

    def test_parts(self, split: str = "test") -> Iterator[tuple[str, tuple[str, ...]]]:
        """Question and answer apart: too short for n-grams, they are matched exactly, the
        question only together with its answer (integrity/short_items.py)."""
        for i in split_items(split):
            yield i.id, (i.question, i.answer)

    def build(self, samples: list[Sample], opts: TaskOptions) -> Task:
        from inspect_ai import Task
        from inspect_ai.dataset import MemoryDataset
        from inspect_ai.model import GenerateConfig

        return Task(
            name=f"arith_{opts.split}",
            dataset=MemoryDataset(samples, name=f"arith-{opts.split}"),
            solver=seeded_generate(opts.seed),
            scorer=first_integer_match(),
            config=GenerateConfig(stop_seqs=["\n"]),
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
