"""Uncertainty of leaderboard averages: bootstrap intervals, paired comparisons, fallback counts.

A row's average (DESIGN §6) is the mean over complete seeds of a weighted average over the
benchmark × base-model cells of each seed. Its interval is a percentile bootstrap that resamples
seeds with replacement and, where a cell's per-item scores are known (its inspect log), the items
within that cell too (two-level bootstrap). The item level is centred on the cell's recorded
score, so the point estimate is always the leaderboard's own number. With few seeds a percentile
interval is too narrow (three seeds: far from 95%); the records carry `n_seeds` so reports say so.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from posttrainbench.records import (
    CellKey,
    LeaderboardCell,
    LeaderboardRow,
    LeaderboardSection,
    Record,
)
from posttrainbench.results.layout import RunPaths

Items = Mapping[str, Sequence[float]]  # run_id → per-item scores in [0, 1]

# One run's share of a seed's weighted average: (coefficient, score in percent, run_id).
Term = tuple[float, float, str]


class Interval(Record):
    """A percentile bootstrap interval of a weighted average (or of a difference), in points."""

    estimate: float
    lo: float
    hi: float
    level: float = 0.95
    n_boot: int
    n_seeds: int
    seeds: list[int]
    item_cells: int = 0
    note: str | None = None

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    @property
    def excludes_zero(self) -> bool:
        return self.lo > 0 or self.hi < 0


class Comparison(Record):
    """`a − b` on the cells both rows have, with a paired bootstrap interval."""

    a: str
    b: str
    weighting: str
    difference: float
    interval: Interval
    p_value: float
    excludes_zero: bool
    n_seeds: int
    cells: list[CellKey]
    only_a: list[CellKey]
    only_b: list[CellKey]
    full_grid: bool


def fallback_summary(row: LeaderboardRow) -> dict[str, int]:
    """Cells per cause of fallback, and cells whose integrity verdict a person overrode."""
    return {
        "no model": sum(c.source == "fallback_no_model" for c in row.cells),
        "eval failed": sum(c.source == "fallback_eval_failed" for c in row.cells),
        "flagged": sum(c.source == "fallback_flagged" for c in row.cells),
        "overridden": sum(c.reviewed is not None for c in row.cells),
    }


# --- per-item scores ---------------------------------------------------------------------------

_LETTERS = {"C": 1.0, "I": 0.0, "P": 0.5, "N": 0.0}


def _item_value(value: Any) -> float | None:
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        if value in _LETTERS:
            return _LETTERS[value]
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _log_files(eval_dir: Path) -> list[Path]:
    """Candidate logs, best first: the one metrics.json names, then the newest."""
    logs = [
        p
        for p in eval_dir.iterdir()
        if p.is_file() and (p.suffix == ".eval" or (p.suffix == ".json" and p.stem != "metrics"))
    ]
    logs.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    try:
        named = json.loads((eval_dir / "metrics.json").read_text()).get("log_file")
    except (OSError, ValueError, AttributeError):
        named = None
    if isinstance(named, str):
        path = Path(named.removeprefix("file://"))
        chosen = [p for p in logs if p.name == path.name]
        logs = chosen + [p for p in logs if p not in chosen]
    return logs


def _read_items(path: Path) -> list[float] | None:
    from inspect_ai.log import read_eval_log

    log = read_eval_log(str(path))
    scorer = log.results.scores[0].name if log.results and log.results.scores else None
    per_id: dict[str, list[float]] = defaultdict(list)
    for sample in log.samples or []:
        scores = sample.scores or {}
        score = scores.get(scorer) if scorer else None
        if score is None and scores:
            score = next(iter(scores.values()))
        value = _item_value(score.value) if score is not None else None
        if value is None or not 0.0 <= value <= 1.0:
            return None  # not a per-item accuracy: no items rather than wrong ones
        per_id[str(sample.id)].append(value)
    return [math.fsum(v) / len(v) for v in per_id.values()] or None  # epochs → one item


def load_items(run_dir: Path) -> list[float] | None:
    """Per-item scores in [0, 1] of the run's evaluation (epochs averaged per item), from its
    inspect log under `eval/`; None when there is no readable log with per-item scores."""
    eval_dir = RunPaths(run_dir).eval.root
    try:
        candidates = _log_files(eval_dir)
    except OSError:
        return None
    for path in candidates:
        try:
            items = _read_items(path)
        except Exception:  # a corrupt or foreign log: try the next, never break a report
            continue
        if items:
            return items
    return None


# --- the bootstrap -----------------------------------------------------------------------------


def _seed_terms(
    cells: Sequence[LeaderboardCell], weights: Mapping[str, float], grid: set[tuple[str, str]]
) -> list[Term]:
    """Terms of one seed's weighted average over the cells of `grid`: Σ_b w_b · mean_m cell,
    repeats of a cell at their mean, the weights renormalised over the benchmarks present."""
    runs: dict[tuple[str, str], list[LeaderboardCell]] = defaultdict(list)
    for c in cells:
        if (c.benchmark, c.base_model) in grid:
            runs[(c.benchmark, c.base_model)].append(c)
    models: dict[str, int] = defaultdict(int)
    for b, _m in runs:
        models[b] += 1
    total = math.fsum(weights[b] for b in models)
    terms: list[Term] = []
    for (b, _m), rs in runs.items():
        coef = weights[b] / total / models[b] / len(rs)
        terms += [(coef, c.score, c.run_id) for c in rs]
    return terms


def _item_deltas(
    values: np.ndarray, freq: np.ndarray, n: int, rng: np.random.Generator, size: int
) -> np.ndarray:
    """`size` bootstrap means of n items (distinct `values` at frequencies `freq`) minus their
    mean, drawn exactly through the counts of each value (binomial for two values), so the cost
    does not grow with the number of items."""
    mean = float(np.dot(values, freq))
    if len(values) == 1:
        return np.zeros(size)
    if len(values) == 2:
        k = rng.binomial(n, freq[1], size=size)
        return values[0] + (values[1] - values[0]) * k / n - mean
    return np.asarray(rng.multinomial(n, freq, size=size) @ values / n - mean)


def _bootstrap(
    seeds: list[list[Term]],
    items: Items | None,
    n_boot: int,
    seed: int,
) -> tuple[float, np.ndarray, int]:
    """(estimate, bootstrap draws, runs resampled at item level) of mean_s Σ coef · score."""
    rng = np.random.default_rng(seed)
    k = len(seeds)
    point = np.array([math.fsum(c * v for c, v, _ in terms) for terms in seeds])
    idx = rng.integers(0, k, size=(n_boot, k))
    draws = point[idx].mean(axis=1)
    used = 0
    if items:
        # Each slot of each seed resample gets its own item resample of the seed it drew (a seed
        # drawn twice in one bootstrap sample is two independent copies).
        shift = np.zeros((n_boot, k))
        dist: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        for s, terms in enumerate(seeds):
            slots = idx == s
            n_slots = int(slots.sum())
            total = np.zeros(n_slots)
            for coef, _, run_id in terms:
                its = items.get(run_id)
                if not its:
                    continue
                if run_id not in dist:
                    values, counts = np.unique(np.asarray(its, dtype=float), return_counts=True)
                    dist[run_id] = (values, counts / len(its), len(its))
                total += 100 * coef * _item_deltas(*dist[run_id], rng, n_slots)
                used += 1
            shift[slots] = total
        if used:
            draws = draws + shift.mean(axis=1)
    return float(point.mean()), draws, used


def _interval(
    estimate: float,
    draws: np.ndarray,
    level: float,
    seeds: list[int],
    used: int,
) -> Interval:
    if not 0 < level < 1:
        raise ValueError(f"level {level} is not in (0, 1)")
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    note = None
    if len(seeds) == 1:
        note = (
            "one seed: the interval reflects item sampling only"
            if used
            else "one seed and no per-item scores: no interval"
        )
    elif len(seeds) < 5:
        note = f"{len(seeds)} seeds: a bootstrap interval over so few seeds is too narrow"
    return Interval(
        estimate=estimate,
        lo=float(lo),
        hi=float(hi),
        level=level,
        n_boot=len(draws),
        n_seeds=len(seeds),
        seeds=seeds,
        item_cells=used,
        note=note,
    )


def _by_seed(row: LeaderboardRow) -> dict[int, list[LeaderboardCell]]:
    by: dict[int, list[LeaderboardCell]] = defaultdict(list)
    for c in row.cells:
        by[c.seed].append(c)
    return by


def bootstrap_average(
    row: LeaderboardRow,
    section: LeaderboardSection,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    items: Items | None = None,
) -> Interval:
    """Percentile bootstrap interval of `row.average` over its complete seeds (points).

    `items[run_id]`: per-item scores of that run, resampled within its cell; cells without are
    taken as they are. Raises ValueError if the row has no complete seed (no average)."""
    if not row.complete_seeds:
        raise ValueError(f"{row.label} has no complete seed: no average to bound")
    grid = {(b, m) for b in section.weights for m in section.base_models}
    by_seed = _by_seed(row)
    seeds = sorted(row.complete_seeds)
    terms = [_seed_terms(by_seed[s], section.weights, grid) for s in seeds]
    estimate, draws, used = _bootstrap(terms, items, n_boot, seed)
    return _interval(estimate, draws, level, seeds, used)


def _keys(row: LeaderboardRow) -> set[tuple[int, str, str]]:
    return {(c.seed, c.benchmark, c.base_model) for c in row.cells}


def _cell_keys(keys: set[tuple[int, str, str]]) -> list[CellKey]:
    return [CellKey(seed=s, benchmark=b, base_model=m) for s, b, m in sorted(keys)]


def paired_difference(
    row_a: LeaderboardRow,
    row_b: LeaderboardRow,
    section: LeaderboardSection,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    items: Items | None = None,
) -> Comparison:
    """`a − b` in points over the cells (seed × benchmark × base model) both rows have.

    Per shared seed, the difference of the two weighted averages over the shared cells (weights
    renormalised over the benchmarks present; when every shared seed covers the full grid,
    `full_grid` is true and this is the difference of the leaderboard averages on those seeds);
    then the mean over shared seeds. The paired bootstrap resamples shared seeds, the same ones
    for both, and items within each cell where `items` has them. `p_value`: two-sided bootstrap
    p-value of the difference being 0. Raises ValueError if the rows share no cell."""
    ka, kb = _keys(row_a), _keys(row_b)
    shared = ka & kb
    if not shared:
        raise ValueError(f"{row_a.label} and {row_b.label} share no cell")
    seeds = sorted({s for s, _, _ in shared})
    by_a, by_b = _by_seed(row_a), _by_seed(row_b)
    full = {(b, m) for b in section.weights for m in section.base_models}
    terms: list[list[Term]] = []
    full_grid = True
    for s in seeds:
        grid = {(b, m) for ss, b, m in shared if ss == s}
        full_grid &= grid == full
        ta = _seed_terms(by_a[s], section.weights, grid)
        tb = _seed_terms(by_b[s], section.weights, grid)
        terms.append(ta + [(-c, v, r) for c, v, r in tb])
    estimate, draws, used = _bootstrap(terms, items, n_boot, seed)
    interval = _interval(estimate, draws, level, seeds, used)
    degenerate = len(seeds) == 1 and not used
    p = min(1.0, 2 * min(float(np.mean(draws <= 0)), float(np.mean(draws >= 0))))
    return Comparison(
        a=row_a.label,
        b=row_b.label,
        weighting=section.weighting,
        difference=estimate,
        interval=interval,
        p_value=1.0 if degenerate else p,
        excludes_zero=interval.excludes_zero and not degenerate,
        n_seeds=len(seeds),
        cells=_cell_keys(shared),
        only_a=_cell_keys(ka - kb),
        only_b=_cell_keys(kb - ka),
        full_grid=full_grid,
    )
