"""Zero-shot scores of base and instruct models: the published table plus measured ones.

The published PostTrainBench table (`data/published_baselines.csv`, scores in [0, 1]) covers the
four official base models, their instruct counterparts and the seven benchmarks. Pairs it does
not cover (the embedded `ptb-tiny` × `arith`) are measured once by evaluating the base model
with the harness's own evaluation and cached under `<cache>/baselines/`.
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


def lookup(baselines_dir: Path, model_key: str, benchmark: str) -> BaselineRef | None:
    """The base score if known (published first, then measured), else None.

    A measured record that does not load, or that is for another benchmark or split, is
    ignored (and so measured again) rather than trusted."""
    score = published().get(model_key, {}).get(benchmark)
    if score is not None:
        return BaselineRef(score=score, source="published", detail="PostTrainBench table")
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
    return BaselineRef(score=metrics.score, source="measured", detail=str(path))


def record_measured(baselines_dir: Path, model_key: str, metrics: EvalMetrics) -> BaselineRef:
    path = measured_path(baselines_dir, model_key, metrics.benchmark)
    write_json(path, metrics)
    return BaselineRef(score=metrics.score, source="measured", detail=str(path))
