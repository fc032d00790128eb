"""The PostTrainBench score (DESIGN §6), reproduced exactly, and the leaderboard built from it.

gap_b = mean over base models of (instruct − base) on benchmark b;
w_b = (1/gap_b) / Σ_b' (1/gap_b');
agent score = Σ_b w_b · mean over base models of cell(b, m), averaged over seeds (mean ± sample
std). Cells are a run's `Outcome.score`, which already holds the base-score fallback.

The benchmarks present are split into sets, each its own leaderboard section with its own
weights: those with a published gap (`paper`, weighted by inverse gap over the set) and those
without (the embedded ones, `uniform`), so a stray `arith` run never changes the official
weights. One row per agent configuration (`AgentConfig`); a seed that lacks a cell of its
section's grid gets no average, and the row lists the missing cells instead of renormalising.

A board is built for one suite (`catalog.suites`): only that suite's official benchmarks are
weighted, and runs of another suite are listed as left out, never mixed in (`pick_suite`
refuses a mixed set of runs unless a suite is named).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import NamedTuple

from posttrainbench.catalog import MODELS
from posttrainbench.catalog.suites import DEFAULT_SUITE, Suite, suite
from posttrainbench.errors import ConfigError
from posttrainbench.records import (
    FALLBACK_SOURCES,
    STAGES,
    AgentConfig,
    BenchmarkScore,
    CellKey,
    Leaderboard,
    LeaderboardCell,
    LeaderboardRow,
    LeaderboardSection,
    LeftOutRun,
    LlmTotals,
    Outcome,
    RunRecord,
    StageName,
    UnreadableRun,
    Weighting,
)
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


def _paper(table: BaselineTable, benchmarks: list[str]) -> dict[str, float]:
    inv = {b: 1 / g for b, g in gaps(table, benchmarks).items()}
    total = sum(inv.values())
    return {b: inv[b] / total for b in benchmarks}


def _uniform(table: BaselineTable, benchmarks: list[str]) -> dict[str, float]:
    return {b: 1 / len(benchmarks) for b in benchmarks}


# weighting kind → weights of a benchmark set (benchmark → weight, summing to 1)
WEIGHTINGS: dict[Weighting, Callable[[BaselineTable, list[str]], dict[str, float]]] = {
    "paper": _paper,
    "uniform": _uniform,
}


def benchmark_sets(table: BaselineTable, benchmarks: Iterable[str]) -> dict[Weighting, list[str]]:
    """Split benchmarks by weighting: `paper` where the table has a positive gap, else `uniform`.

    Kinds with no benchmark are left out; `paper` comes first."""
    bs = sorted(set(benchmarks))
    g = gaps(table, bs)
    sets: dict[Weighting, list[str]] = {
        "paper": [b for b in bs if g.get(b, 0) > 0],
        "uniform": [b for b in bs if g.get(b, 0) <= 0],
    }
    return {kind: members for kind, members in sets.items() if members}


def weights(table: BaselineTable, benchmarks: Iterable[str]) -> tuple[dict[str, float], Weighting]:
    """Weights of one benchmark set: `paper` if every benchmark has a gap, else `uniform`."""
    sets = benchmark_sets(table, benchmarks)
    kind: Weighting = "paper" if list(sets) == ["paper"] else "uniform"
    return WEIGHTINGS[kind](table, sorted(set(benchmarks))), kind


def weighted_average(cells: Cells, w: dict[str, float]) -> float:
    """Σ_b w_b · mean_m cell(b, m), with the weights as given (no renormalisation).

    Raises ValueError if a benchmark with a weight has no cell, or a cell has no weight: a
    partial average would be silently on another scale. Callers report missing cells instead."""
    by_bench: dict[str, list[float]] = defaultdict(list)
    for (b, _m), score in cells.items():
        by_bench[b].append(score)
    if missing := sorted(set(w) - set(by_bench)):
        raise ValueError(f"no cell for weighted benchmark(s) {', '.join(missing)}")
    if unweighted := sorted(set(by_bench) - set(w)):
        raise ValueError(f"no weight for benchmark(s) {', '.join(unweighted)}")
    return sum(wb * statistics.fmean(by_bench[b]) for b, wb in w.items())


def config_key(config: AgentConfig) -> str:
    """A hashable identity of a configuration (records are not hashable)."""
    return config.model_dump_json()


def row_labels(configs: Iterable[AgentConfig]) -> dict[str, str]:
    """config_key → `label()` where unique, else `label [detail]` (and ` #n` if still shared)."""
    unique = {config_key(c): c for c in configs}
    shared = Counter(c.label() for c in unique.values())
    labels: dict[str, str] = {}
    seen: Counter[str] = Counter()
    for key, c in unique.items():
        label = c.label() if shared[c.label()] == 1 else f"{c.label()} [{c.detail()}]"
        seen[label] += 1  # two configs whose detail() reads the same (long commands)
        labels[key] = label if seen[label] == 1 else f"{label} #{seen[label]}"
    return labels


def left_out(record: RunRecord) -> LeftOutRun:
    """Why a run without an outcome is not in the board: its failed stage, or where it stands."""
    stage = record.failed_stage
    if stage is not None:
        error = record.stages[stage].error
        reason = error.message if error else f"stage {stage} failed without an error record"
    else:
        stage = next((s for s in STAGES if record.stages[s].state != "done"), None)
        reason = (
            f"stage {stage} is {record.stages[stage].state}"
            if stage
            else "every stage is done but no outcome was recorded"
        )
    return _left_out_as(record, reason, stage)


def _left_out_as(record: RunRecord, reason: str, stage: StageName | None = None) -> LeftOutRun:
    spec = record.spec
    return LeftOutRun(
        run_id=spec.run_id,
        label=spec.agent_config.label(),
        benchmark=spec.benchmark,
        base_model=spec.base_model,
        seed=spec.seed,
        stage=stage,
        reason=reason,
        suite=spec.suite,
    )


def unjudged(record: RunRecord) -> bool:
    """No LLM judge read the run: its integrity has no verdict, or the judge check was skipped
    or never ran."""
    v = record.verdict
    return v is None or "judge" not in v.checks or "judge" in v.skipped


UNJUDGED_REASON = "no LLM judge read the run (pass --judge-model; or ptb judge RUN)"


def other_suite_reason(record: RunRecord, board: Suite) -> str | None:
    """Why a run does not belong on `board`'s board: another suite, or an official benchmark
    the suite leaves out; None if it belongs (embedded benchmarks belong to every suite)."""
    spec = record.spec
    if spec.suite != board.id:
        return f"suite {spec.suite}, board {board.id}"
    if not board.admits(spec.benchmark):
        return f"benchmark {spec.benchmark} is not in suite {board.id}"
    return None


def pick_suite(records: Iterable[RunRecord], name: str | None = None) -> Suite:
    """The suite to build a board for: `name` if given, else the one suite the runs follow
    (the default where there are none); runs of several suites without a name are refused."""
    if name is not None:
        return suite(name)
    found = Counter(r.spec.suite for r in records)
    if len(found) > 1:
        runs = ", ".join(f"{s} ({n} runs)" for s, n in sorted(found.items()))
        raise ConfigError(
            f"the runs follow different suites: {runs}; a board never mixes suites",
            f"pass --suite <id>, e.g. --suite {max(found, key=lambda s: (found[s], s))}",
        )
    return suite(next(iter(found), DEFAULT_SUITE))


def _cell(record: RunRecord, outcome: Outcome) -> LeaderboardCell:
    spec = record.spec
    return LeaderboardCell(
        seed=spec.seed,
        benchmark=spec.benchmark,
        base_model=spec.base_model,
        run_id=spec.run_id,
        score=100 * outcome.score,
        source=outcome.source,
        reason=outcome.reason,
        reviewed=outcome.reviewed,
        llm=record.agent.api_usage if record.agent else None,
        unjudged=unjudged(record),
    )


def _llm(cells: list[LeaderboardCell]) -> LlmTotals | None:
    used = [c.llm for c in cells if c.llm is not None]
    if not used:
        return None
    return LlmTotals(
        runs=len(used),
        calls=sum(u.calls for u in used),
        input_tokens=sum(u.input_tokens for u in used),
        cached_tokens=sum(u.cached_tokens for u in used),
        output_tokens=sum(u.output_tokens for u in used),
        cost_usd=sum((u.cost_usd for u in used), Decimal(0)),
    )


def board_row(
    label: str,
    config: AgentConfig,
    cells: list[LeaderboardCell],
    w: dict[str, float],
    models: list[str],
) -> LeaderboardRow:
    """One agent configuration's row from its cells: per-seed weighted averages over complete
    seeds, per-benchmark means, fallbacks by cause, and the cells it is missing."""
    # seed → (benchmark, model) → scores; repeated runs of one cell within a seed count once,
    # at their mean.
    grid: dict[int, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
    for c in cells:
        grid[c.seed][(c.benchmark, c.base_model)].append(c.score)
    seeds = sorted(grid)
    means = {s: {k: statistics.fmean(v) for k, v in grid[s].items()} for s in seeds}
    missing = [
        CellKey(seed=s, benchmark=b, base_model=m)
        for s in seeds
        for b in sorted(w)
        for m in models
        if (b, m) not in means[s]
    ]
    complete = [s for s in seeds if not any(k.seed == s for k in missing)]
    per_seed = [weighted_average(means[s], w) for s in complete]
    benchmarks = {}
    for b in sorted({c.benchmark for c in cells}):
        by_seed = [[v for (bb, _m), v in means[s].items() if bb == b] for s in seeds]
        in_b = [c for c in cells if c.benchmark == b]
        benchmarks[b] = BenchmarkScore(
            score=statistics.fmean(statistics.fmean(v) for v in by_seed if v),
            n_cells=len(in_b),
            fallbacks=sum(c.source != "evaluated" for c in in_b),
        )
    return LeaderboardRow(
        label=label,
        config=config,
        average=statistics.fmean(per_seed) if per_seed else None,
        std=statistics.stdev(per_seed) if len(per_seed) > 1 else None,
        seeds=seeds,
        complete_seeds=complete,
        n_runs=len(cells),
        benchmarks=benchmarks,
        fallbacks={src: sum(c.source == src for c in cells) for src in FALLBACK_SOURCES},
        cells=sorted(cells, key=lambda c: (c.seed, c.benchmark, c.base_model, c.run_id)),
        missing=missing,
        llm=_llm(cells),
    )


class _Scored(NamedTuple):
    record: RunRecord
    outcome: Outcome
    config: AgentConfig
    key: str


def _section(
    kind: Weighting, w: dict[str, float], runs: list[_Scored], labels: dict[str, str]
) -> LeaderboardSection:
    configs: dict[str, AgentConfig] = {}
    cells: dict[str, list[LeaderboardCell]] = defaultdict(list)
    for run in runs:
        configs[run.key] = run.config
        cells[run.key].append(_cell(run.record, run.outcome))
    models = sorted({run.record.spec.base_model for run in runs})
    rows = [board_row(labels[k], configs[k], cells[k], w, models) for k in configs]
    rows.sort(key=lambda r: (r.average is None, -(r.average or 0.0), r.label))
    return LeaderboardSection(weighting=kind, weights=w, base_models=models, rows=rows)


def leaderboard(
    records: Iterable[RunRecord],
    table: BaselineTable,
    unreadable: Iterable[UnreadableRun] = (),
    board_suite: Suite | None = None,
    official: bool = False,
) -> Leaderboard:
    """Sections per benchmark set, rows per agent configuration, and every run left out; the
    board is `board_suite`'s (default: `pick_suite` of the records). An `official` board leaves
    out the runs no LLM judge read (`unjudged`)."""
    records = list(records)
    board_suite = board_suite or pick_suite(records)
    scored: list[_Scored] = []
    failed: list[LeftOutRun] = []
    in_progress: list[LeftOutRun] = []
    other: list[LeftOutRun] = []
    not_judged: list[LeftOutRun] = []
    keys: dict[tuple[object, ...], tuple[AgentConfig, str]] = {}
    for r in records:
        if (why := other_suite_reason(r, board_suite)) is not None:
            other.append(_left_out_as(r, why))
            continue
        if r.outcome is None:
            (failed if r.failed_stage else in_progress).append(left_out(r))
            continue
        if official and unjudged(r):
            not_judged.append(_left_out_as(r, UNJUDGED_REASON, "integrity"))
            continue
        spec = r.spec  # thousands of runs share a few configurations: build each once
        fields = tuple(getattr(spec, f) for f in AgentConfig.model_fields)
        if fields not in keys:
            config = spec.agent_config
            keys[fields] = (config, config_key(config))
        scored.append(_Scored(r, r.outcome, *keys[fields]))
    labels = row_labels(config for config, _ in keys.values())
    sets = benchmark_sets(table, {run.record.spec.benchmark for run in scored})
    sections = []
    for kind, bs in sets.items():
        runs = [run for run in scored if run.record.spec.benchmark in bs]
        sections.append(_section(kind, WEIGHTINGS[kind](table, bs), runs, labels))
    return Leaderboard(
        suite=board_suite.id,
        sections=sections,
        unreadable=list(unreadable),
        failed=failed,
        in_progress=in_progress,
        other_suite=other,
        official=official,
        unjudged=not_judged,
    )
