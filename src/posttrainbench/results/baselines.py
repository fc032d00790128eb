"""Zero-shot scores of base and instruct models: the published table plus measured ones.

The published PostTrainBench table (`data/published_baselines.csv`, scores in [0, 1]) covers the
four official base models, their instruct counterparts and the seven benchmarks. `ptb baseline`
measures scores with the harness's own evaluation and caches them under `<cache>/baselines/`;
a measured score takes precedence over the published one, and records say which was used.
Pairs nobody measured or published (the embedded `ptb-tiny` × `arith`) are measured on first use.
"""

from __future__ import annotations

import csv
import logging
from functools import cache
from pathlib import Path

from posttrainbench.errors import ResultsDirError
from posttrainbench.records import BaselineRef, EvalMetrics
from posttrainbench.results.layout import EvalPaths
from posttrainbench.results.store import read_json, write_json

log = logging.getLogger(__name__)

PUBLISHED_CSV = Path(__file__).parent / "data" / "published_baselines.csv"

# model key (repo name without owner) → benchmark id → score in [0, 1]
BaselineTable = dict[str, dict[str, float]]


@cache
def published() -> BaselineTable:
    with PUBLISHED_CSV.open() as f:
        return {
            row["model"]: {k: float(v) for k, v in row.items() if k != "model" and v != ""}
            for row in csv.DictReader(f)
        }


def measured_path(baselines_dir: Path, model_key: str, benchmark: str) -> Path:
    return baselines_dir / f"{model_key}__{benchmark}.json"


def measured_eval_paths(baselines_dir: Path, model_key: str, benchmark: str) -> EvalPaths:
    """Where the measuring evaluation writes its logs."""
    return EvalPaths(baselines_dir / f"{model_key}__{benchmark}")


def read_measured(baselines_dir: Path, model_key: str, benchmark: str) -> EvalMetrics | None:
    """A measured baseline if it is a full test-split evaluation of that benchmark, else None
    (a record that does not load, or is partial, is ignored — and so measured again)."""
    path = measured_path(baselines_dir, model_key, benchmark)
    if not path.is_file():
        return None
    try:
        metrics = read_json(path, EvalMetrics)
    except ResultsDirError as exc:
        log.warning("ignoring measured baseline: %s", exc.message)
        return None
    if metrics.benchmark != benchmark or metrics.split != "test" or metrics.params.get("limit"):
        log.warning("ignoring measured baseline %s: not a full test-split evaluation", path)
        return None
    return metrics


def lookup(baselines_dir: Path, model_key: str, benchmark: str) -> BaselineRef | None:
    """The base score if known: measured here (`ptb baseline`) first, then the published
    table; None when neither has it."""
    metrics = read_measured(baselines_dir, model_key, benchmark)
    if metrics is not None:
        path = measured_path(baselines_dir, model_key, benchmark)
        return BaselineRef(score=metrics.score, source="measured", detail=str(path))
    score = published().get(model_key, {}).get(benchmark)
    if score is not None:
        return BaselineRef(score=score, source="published", detail="PostTrainBench table")
    return None


def table(baselines_dir: Path) -> tuple[BaselineTable, list[str]]:
    """The published table with every valid measured score laid over it, and the
    `model/benchmark` cells that came from measurements."""
    merged = {model: dict(row) for model, row in published().items()}
    measured: list[str] = []
    for path in sorted(baselines_dir.glob("*__*.json")):
        model_key, _, benchmark = path.stem.partition("__")
        metrics = read_measured(baselines_dir, model_key, benchmark)
        if metrics is not None:
            merged.setdefault(model_key, {})[benchmark] = metrics.score
            measured.append(f"{model_key}/{benchmark}")
    return merged, measured


def record_measured(baselines_dir: Path, model_key: str, metrics: EvalMetrics) -> BaselineRef:
    path = measured_path(baselines_dir, model_key, metrics.benchmark)
    write_json(path, metrics)
    return BaselineRef(score=metrics.score, source="measured", detail=str(path))
