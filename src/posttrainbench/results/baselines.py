"""Zero-shot scores of base and instruct models: the published table plus measured ones.

The published PostTrainBench table (`data/published_baselines.csv`, scores in [0, 1]) covers the
four official base models, their instruct counterparts and the seven benchmarks. Pairs it does
not cover (the embedded `ptb-tiny` × `arith`) are measured once by evaluating the base model
with the harness's own evaluation and cached under `<cache>/baselines/`.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

from posttrainbench.records import EvalMetrics
from posttrainbench.results.store import read_json, write_json

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


def lookup(baselines_dir: Path, model_key: str, benchmark: str) -> float | None:
    """The base score if known (published first, then measured), else None."""
    score = published().get(model_key, {}).get(benchmark)
    if score is not None:
        return score
    path = measured_path(baselines_dir, model_key, benchmark)
    return read_json(path, EvalMetrics).score if path.is_file() else None


def record_measured(baselines_dir: Path, model_key: str, metrics: EvalMetrics) -> None:
    write_json(measured_path(baselines_dir, model_key, metrics.benchmark), metrics)
