"""Zero-shot scores of base and instruct models: the published table plus measured ones.

The published PostTrainBench table (`data/published_baselines.csv`, scores in [0, 1]) covers the
four official base models, their instruct counterparts and the seven benchmarks. `ptb baseline`
measures scores with the harness's own evaluation and caches them under
`<cache>/baselines/<suite>/`, by suite since suites evaluate with other seeds (a ptb-v1.0 baseline
is never reused for ptb-v1.2); a measured score takes precedence over the published one, and
records say which was used. Files from before suites, directly under `baselines/`, count for the
suite they record, ptb-v1.0 where they record none (as pre-suite runs migrate to ptb-v1.0).
Pairs nobody measured or published (the embedded `ptb-tiny` × `arith`) are measured on first use.
"""

from __future__ import annotations

import csv
import logging
from functools import cache
from pathlib import Path

from posttrainbench.catalog.suites import V1_0
from posttrainbench.errors import ResultsDirError
from posttrainbench.records import BaselineRef, EvalMetrics
from posttrainbench.results.layout import EvalPaths
from posttrainbench.results.store import read_json, write_json

log = logging.getLogger(__name__)

PUBLISHED_CSV = Path(__file__).parent / "data" / "published_baselines.csv"
LEGACY_SUITE = V1_0.id  # the suite of measurements stored before suites

# model key (repo name without owner) → benchmark id → score in [0, 1]
BaselineTable = dict[str, dict[str, float]]


@cache
def published() -> BaselineTable:
    with PUBLISHED_CSV.open() as f:
        return {
            row["model"]: {k: float(v) for k, v in row.items() if k != "model" and v != ""}
            for row in csv.DictReader(f)
        }


def measured_path(baselines_dir: Path, model_key: str, benchmark: str, suite: str) -> Path:
    """Where a measured baseline of `suite` is kept: one folder per suite, since suites
    evaluate with other seeds."""
    return baselines_dir / suite / f"{model_key}__{benchmark}.json"


def legacy_path(baselines_dir: Path, model_key: str, benchmark: str) -> Path:
    """Where baselines were kept before suites: read for the suite they record, ptb-v1.0 if
    none (they followed its protocol, as runs from then migrate to it)."""
    return baselines_dir / f"{model_key}__{benchmark}.json"


def measured_eval_paths(
    baselines_dir: Path, model_key: str, benchmark: str, suite: str
) -> EvalPaths:
    """Where the measuring evaluation writes its logs."""
    return EvalPaths(baselines_dir / suite / f"{model_key}__{benchmark}")


def recorded_suite(metrics: EvalMetrics) -> str:
    """The suite an evaluation followed; ptb-v1.0 for one from before suites."""
    return metrics.suite or LEGACY_SUITE


def _read(path: Path, benchmark: str, suite: str) -> EvalMetrics | None:
    try:
        metrics = read_json(path, EvalMetrics)
    except ResultsDirError as exc:
        log.warning("ignoring measured baseline: %s", exc.message)
        return None
    if metrics.benchmark != benchmark or metrics.split != "test" or metrics.params.get("limit"):
        log.warning("ignoring measured baseline %s: not a full test-split evaluation", path)
        return None
    if recorded_suite(metrics) != suite:
        if path.parent.name == suite:  # stored under this suite's folder but of another
            log.warning("ignoring measured baseline %s: of suite %s", path, recorded_suite(metrics))
        return None
    return metrics


def read_measured(
    baselines_dir: Path, model_key: str, benchmark: str, suite: str
) -> tuple[EvalMetrics, Path] | None:
    """A measured baseline of `suite` if it is a full test-split evaluation of that benchmark
    under that suite, and where it is; else None (a record that does not load, is partial or of
    another suite is ignored — and so measured again)."""
    for path in (
        measured_path(baselines_dir, model_key, benchmark, suite),
        legacy_path(baselines_dir, model_key, benchmark),
    ):
        if path.is_file():
            metrics = _read(path, benchmark, suite)
            if metrics is not None:
                return metrics, path
    return None


def lookup(baselines_dir: Path, model_key: str, benchmark: str, suite: str) -> BaselineRef | None:
    """The base score under `suite` if known: measured here (`ptb baseline`) first, then the
    published table; None when neither has it."""
    found = read_measured(baselines_dir, model_key, benchmark, suite)
    if found is not None:
        metrics, path = found
        return BaselineRef(score=metrics.score, source="measured", detail=str(path))
    score = published().get(model_key, {}).get(benchmark)
    if score is not None:
        return BaselineRef(score=score, source="published", detail="PostTrainBench table")
    return None


def table(baselines_dir: Path, suite: str) -> tuple[BaselineTable, list[str]]:
    """The published table with every valid measured score of `suite` laid over it, and the
    `model/benchmark` cells that came from measurements."""
    merged = {model: dict(row) for model, row in published().items()}
    measured: list[str] = []
    stems = {p.stem for d in (baselines_dir / suite, baselines_dir) for p in d.glob("*__*.json")}
    pairs = {(stem.partition("__")[0], stem.partition("__")[2]) for stem in stems}
    for model_key, benchmark in sorted(pairs):
        found = read_measured(baselines_dir, model_key, benchmark, suite)
        if found is not None:
            merged.setdefault(model_key, {})[benchmark] = found[0].score
            measured.append(f"{model_key}/{benchmark}")
    return merged, measured


def record_measured(baselines_dir: Path, model_key: str, metrics: EvalMetrics) -> BaselineRef:
    """Keep a measured baseline under the suite it followed."""
    path = measured_path(baselines_dir, model_key, metrics.benchmark, recorded_suite(metrics))
    write_json(path, metrics)
    return BaselineRef(score=metrics.score, source="measured", detail=str(path))
