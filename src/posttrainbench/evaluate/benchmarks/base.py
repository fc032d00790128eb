"""The contract of a benchmark implementation and what all of them share.

A `Benchmark` turns its upstream data into inspect-ai `Sample`s (`samples`) and builds the task
from a selection of them (`build`). `make_task` does the rest the same way for every benchmark:
it picks the items (`--limit`, a seeded shuffle where the catalog says so), sets the sampling
(the model's own, evaluate/generation.py) and the ladder's max_tokens, and names the task with
its version.

Inside a sandbox the agent's evaluate.py has no hub cache: it reads the items the harness
exported into the workspace (`PTB_EVAL_DATA_DIR/<split>.jsonl`, written by `export`). What is
exported is the inputs only: id, input, choices and the metadata fields the solver reads
(`Benchmark.input_fields`, an allow-list); never a target, reference solution, test or rubric.
The agent generates on them and the harness-side scoring service scores the completions
(evaluate/scoring_service.py), so the targets stay with the harness.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from posttrainbench.errors import DataUnavailableError
from posttrainbench.records import SamplingDefaults

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.dataset import Sample
    from inspect_ai.solver import Solver

    from posttrainbench.catalog.benchmarks import BenchmarkInfo, HubSource, UrlSource

EVAL_DATA_VAR = "PTB_EVAL_DATA_DIR"
SHUFFLE_SEED = 20250301  # the fixed seed of `--limit` shuffles, so dev subsets are stable


class TaskOptions(BaseModel):
    """How one evaluation is run; everything here is recorded in metrics.json."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    split: str = "test"
    limit: int | None = None
    max_tokens: int | None = None  # the ladder step's length; None: the benchmark's first step
    seed: int = 0  # the evaluation seed: per-sample seeds derive from it
    # where the suite's seed also shuffles the answer choices (GPQA under ptb-v1.2): the seed
    choice_seed: int | None = None
    # the model's own sampling (evaluate/generation.py); None: greedy (scripted and judge tasks)
    sampling: SamplingDefaults | None = None
    judge_model: str | None = None  # an inspect model name, e.g. openai/gpt-5-mini
    judge_base_url: str | None = None


def sample_seed(run_seed: int, sample_id: str | int, epoch: int = 1) -> int:
    """A per-sample seed: sha256(run_seed:sample_id:epoch), so items never share a sampler."""
    digest = hashlib.sha256(f"{run_seed}:{sample_id}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class Benchmark(ABC):
    """One benchmark's code; its facts are `self.info` (the catalog entry)."""

    # Sample metadata the solver (not the scorer) reads; the one metadata exported to the
    # workspace. Questions may be listed; answers, tests, rubrics never.
    input_fields: tuple[str, ...] = ()

    def __init__(self, info: BenchmarkInfo) -> None:
        self.info = info

    def hub_source(self, index: int = 0) -> HubSource:
        """The catalog's `index`-th source, which must be a hub repository."""
        from posttrainbench.catalog.benchmarks import HubSource

        src = self.info.sources[index]
        if not isinstance(src, HubSource):
            raise TypeError(f"{self.info.id}: source {index} is not a hub repository")
        return src

    def url_source(self, name: str) -> UrlSource:
        """The catalog's pinned file called `name`."""
        from posttrainbench.catalog.benchmarks import UrlSource

        for src in self.info.sources:
            if isinstance(src, UrlSource) and src.name == name:
                return src
        raise KeyError(f"{self.info.id}: no pinned file {name!r} in the catalog")

    @abstractmethod
    def samples(self, split: str) -> list[Sample]:
        """Every item of the split from the upstream data, in a stable order, with stable ids.
        Raises DataUnavailableError (with a prefetch hint) when the data is not cached."""

    @abstractmethod
    def build(self, samples: list[Sample], opts: TaskOptions) -> Task:
        """The task over the selected samples: dataset, solver, scorer (decoding is set by
        make_task)."""

    def test_texts(self, split: str = "test") -> Iterator[tuple[str, str]]:
        """(item id, text) for every test item: question and answer text the integrity checks
        match training data against."""
        for s in self.samples(split):
            yield str(s.id), sample_text(s)

    def test_parts(self, split: str = "test") -> Iterator[tuple[str, tuple[str, ...]]]:
        """(item id, its parts: question, answer …) so that a record holding only one part still
        covers most of something; by default the item's text is one part."""
        for item, text in self.test_texts(split):
            yield item, (text,)

    def export(self, dest: Path, split: str = "test") -> Path:
        """Write the inputs of the split's samples for the agent's evaluate.py
        (PTB_EVAL_DATA_DIR): no targets; byte for byte the same on every call, since the
        integrity check re-derives it to detect tampering."""
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f"{split}.jsonl"
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for s in self.samples(split):
                f.write(json.dumps(self.input_row(s), ensure_ascii=False, sort_keys=True) + "\n")
        tmp.replace(path)
        return path

    def input_row(self, s: Sample) -> dict[str, Any]:
        """What the agent may see of a sample: id, input, choices, the `input_fields`."""
        row = s.model_dump(mode="json", include={"id", "input", "choices"}, exclude_none=True)
        if isinstance(row.get("input"), list):  # messages get random ids: drop them
            row["input"] = [{k: v for k, v in m.items() if k != "id"} for m in row["input"]]
        kept = {k: v for k, v in (s.metadata or {}).items() if k in self.input_fields}
        if kept:
            row["metadata"] = kept
        return row


def sample_text(s: Sample) -> str:
    """The words of a sample: its input (all messages), choices and target."""
    parts: list[str] = []
    if isinstance(s.input, str):
        parts.append(s.input)
    else:
        parts.extend(m.text for m in s.input)
    parts.extend(s.choices or [])
    parts.extend([s.target] if isinstance(s.target, str) else s.target)
    return "\n".join(p for p in parts if p)


def load_samples(bench: Benchmark, split: str) -> list[Sample]:
    """Upstream samples in the harness; the exported copy inside a sandbox."""
    exported = os.environ.get(EVAL_DATA_VAR)
    if not exported:
        return bench.samples(split)
    from inspect_ai.dataset import Sample

    path = Path(exported) / f"{split}.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").split(
            "\n"
        )  # not splitlines(): rows may hold U+2028
    except OSError as exc:
        raise DataUnavailableError(
            f"cannot read {bench.info.id}'s {split} items from {path}: {exc.strerror}",
            "run evaluate.py from the workspace, where eval_data/ holds them",
        ) from None
    return [Sample.model_validate_json(line) for line in lines if line.strip()]


def select(samples: list[Sample], limit: int | None, shuffle: bool) -> list[Sample]:
    """The first `limit` items, of a fixed-seed shuffle when `shuffle`."""
    if not limit or limit >= len(samples):
        return samples
    if shuffle:
        samples = list(samples)
        random.Random(SHUFFLE_SEED).shuffle(samples)
    return samples[:limit]


GREEDY = SamplingDefaults(source="none", temperature=0.0, greedy=True)


def check_count(bench: Benchmark, split: str, n: int) -> None:
    """The full test set (before --limit) has the size the catalog declares, or nothing runs."""
    info = bench.info
    if split != "test" or info.n_items is None or n == info.n_items:
        return
    source = ", ".join(src.label for src in info.sources) or info.id
    raise DataUnavailableError(
        f"{info.id}: {source} gave {n} test items, the catalog declares {info.n_items}",
        "the cached data is incomplete or changed upstream: delete it and prefetch again",
    )


def make_task(bench: Benchmark, opts: TaskOptions) -> Task:
    """The benchmark's task for these options, sampling from `opts.sampling` (greedy if None)."""
    from inspect_ai.model import GenerateConfig

    from posttrainbench.evaluate.generation import request_extras

    info = bench.info
    if opts.split not in info.splits:
        raise DataUnavailableError(
            f"{info.id} has no split {opts.split!r}", f"splits: {', '.join(info.splits)}"
        )
    loaded = load_samples(bench, opts.split)
    check_count(bench, opts.split, len(loaded))
    chosen = select(loaded, opts.limit, info.shuffle_limit)
    if not chosen:
        raise DataUnavailableError(f"{info.id}/{opts.split} has no items")
    task = bench.build(chosen, opts)
    s = opts.sampling or GREEDY
    task.config = task.config.merge(
        GenerateConfig(
            max_tokens=opts.max_tokens or info.max_tokens[0].max_tokens,
            temperature=s.temperature,  # always sent: a running server's defaults do not apply
            top_p=s.top_p,
            top_k=s.top_k or None,
            extra_body=request_extras(s) or None,
        )
    )
    task.version = info.version
    return task


def seeded_generate(run_seed: int) -> Solver:
    """`generate()` with a per-sample, per-epoch seed (see `sample_seed`)."""
    from inspect_ai.solver import Generate, TaskState, solver

    @solver(name="seeded_generate")
    def _seeded() -> Any:
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            seed = sample_seed(run_seed, state.sample_id, state.epoch)
            return await generate(state, seed=seed)

        return solve

    solver_: Solver = _seeded()
    return solver_
