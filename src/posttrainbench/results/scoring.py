"""The PostTrainBench score (DESIGN §6), reproduced exactly.

gap_b = mean over base models of (instruct − base) on benchmark b;
w_b = (1/gap_b) / Σ_b' (1/gap_b');
agent score = Σ_b w_b · mean over base models of cell(b, m), averaged over seeds (mean ± sample
std). Benchmarks without a known gap (the embedded ones) are weighted uniformly, and the report
says so. Cells are a run's `Outcome.score`, which already holds the base-score fallback.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable

from posttrainbench.catalog import MODELS
from posttrainbench.records import Leaderboard, LeaderboardRow, RunRecord
from posttrainbench.results.baselines import BaselineTable

Cells = dict[tuple[str, str], float]  # (benchmark, base model) → score in [0, 1]


def gaps(table: BaselineTable, benchmarks: Iterable[str]) -> dict[str, float]:
    """Mean instruct − base gap per benchmark, over base models with both rows in the table."""
    result: dict[str, float] = {}
    pairs = [
        (m.baseline_key, m.instruct_key)
        for _, m in MODELS
        if m.instruct_key and m.baseline_key in table and m.instruct_key in table
    ]
    for b in benchmarks:
        diffs = [
            table[i][b] - table[base][b] for base, i in pairs if b in table[i] and b in table[base]
        ]
        if diffs:
            result[b] = statistics.fmean(diffs)
    return result


def weights(table: BaselineTable, benchmarks: Iterable[str]) -> tuple[dict[str, float], str]:
    bs = sorted(set(benchmarks))
    g = gaps(table, bs)
    if bs and len(g) == len(bs) and all(v > 0 for v in g.values()):
        inv = {b: 1 / g[b] for b in bs}
        total = sum(inv.values())
        return {b: inv[b] / total for b in bs}, "paper"
    return {b: 1 / len(bs) for b in bs}, "uniform"


def weighted_average(cells: Cells, w: dict[str, float]) -> float:
    """Σ_b w_b · mean_m cell(b, m); benchmarks missing from cells count as absent, not zero."""
    by_bench: dict[str, list[float]] = defaultdict(list)
    for (b, _m), score in cells.items():
        by_bench[b].append(score)
    present = {b: w[b] for b in by_bench if b in w}
    norm = sum(present.values())
    return sum(wb * statistics.fmean(by_bench[b]) for b, wb in present.items()) / norm


def agent_label(record: RunRecord) -> str:
    spec = record.spec
    return f"{spec.agent}:{spec.agent_model}" if spec.agent_model else spec.agent


def leaderboard(records: Iterable[RunRecord], table: BaselineTable) -> Leaderboard:
    """Rows per agent, best first. Only runs with an outcome count; repeated cells are averaged."""
    records = list(records)
    scored = [r for r in records if r.outcome is not None]
    incomplete = [r.spec.run_id for r in records if r.outcome is None]
    w, weighting = weights(table, {r.spec.benchmark for r in scored})
    # agent → seed → (benchmark, model) → scores
    grid: dict[str, dict[int, dict[tuple[str, str], list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    fallbacks: dict[str, int] = defaultdict(int)
    n_runs: dict[str, int] = defaultdict(int)
    for r in scored:
        assert r.outcome is not None
        label = agent_label(r)
        grid[label][r.spec.seed][(r.spec.benchmark, r.spec.base_model)].append(r.outcome.score)
        fallbacks[label] += r.outcome.source != "evaluated"
        n_runs[label] += 1
    rows = []
    for label, seeds in grid.items():
        # Repeated runs of one cell within a seed count once, at their mean.
        seed_cells = [{k: statistics.fmean(v) for k, v in c.items()} for c in seeds.values()]
        per_seed = [weighted_average(cells, w) for cells in seed_cells]
        per_bench: dict[str, list[float]] = defaultdict(list)
        for cells in seed_cells:
            for (b, _m), score in cells.items():
                per_bench[b].append(score)
        rows.append(
            LeaderboardRow(
                agent=label,
                average=100 * statistics.fmean(per_seed),
                std=100 * statistics.stdev(per_seed) if len(per_seed) > 1 else None,
                n_seeds=len(per_seed),
                n_runs=n_runs[label],
                benchmarks={b: 100 * statistics.fmean(v) for b, v in sorted(per_bench.items())},
                fallbacks=fallbacks[label],
            )
        )
    rows.sort(key=lambda row: row.average, reverse=True)
    return Leaderboard(
        weights=w,
        weighting=weighting,  # type: ignore[arg-type]
        rows=rows,
        incomplete=incomplete,
    )
