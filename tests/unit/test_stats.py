"""Bootstrap intervals and paired comparisons on simulated boards with known answers."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from posttrainbench.errors import ConfigError
from posttrainbench.records import (
    AgentConfig,
    LeaderboardCell,
    LeaderboardRow,
    LeaderboardSection,
    Outcome,
    RunRecord,
    RunSpec,
)
from posttrainbench.report.compare import compare_agents, render_comparison, render_intervals
from posttrainbench.results import baselines, scoring
from posttrainbench.results.stats import (
    bootstrap_average,
    fallback_summary,
    load_items,
    paired_difference,
)
from posttrainbench.results.store import save_run
from posttrainbench.runner import harness_info

WEIGHTS = {"x": 0.7, "y": 0.3}
MODELS = ["m1", "m2"]
SECTION = LeaderboardSection(weighting="paper", weights=WEIGHTS, base_models=MODELS, rows=[])
OFFSETS = {("x", "m1"): -5.0, ("x", "m2"): 5.0, ("y", "m1"): 10.0, ("y", "m2"): -10.0}
CONFIG = AgentConfig(agent="sim", budget_s=60, sandbox="host")


def _row(label: str, scores: dict[tuple[int, str, str], float], **cell: Any) -> LeaderboardRow:
    """A row whose cells hold `scores` (percent); every seed complete."""
    cells = [
        LeaderboardCell.model_construct(
            seed=s, benchmark=b, base_model=m, run_id=f"{label}-{s}-{b}-{m}", score=v,
            source=cell.get("source", "evaluated"), reason=None, reviewed=None, llm=None,
        )
        for (s, b, m), v in scores.items()
    ]  # fmt: skip
    seeds = sorted({s for s, _, _ in scores})
    complete = [s for s in seeds if all((s, b, m) in scores for b in WEIGHTS for m in MODELS)]
    per_seed = [
        sum(w * sum(scores[(s, b, m)] for m in MODELS) / len(MODELS) for b, w in WEIGHTS.items())
        for s in complete
    ]
    return LeaderboardRow.model_construct(
        label=label, config=CONFIG, average=sum(per_seed) / len(per_seed) if per_seed else None,
        std=None, seeds=seeds, complete_seeds=complete, n_runs=len(cells), benchmarks={},
        fallbacks={}, cells=cells, missing=[],
    )  # fmt: skip


def _simulate(
    rng: np.random.Generator, label: str, mu: float, n_seeds: int, n_items: int,
    sigma: float = 3.0, shift: float = 0.0, offsets: dict[tuple[str, str], float] | None = None,
) -> tuple[LeaderboardRow, dict[str, list[float]]]:  # fmt: skip
    """Per seed an effect N(0, sigma); per cell true accuracy mu + effect + offset (the offsets
    weigh to 0), items Bernoulli of it; the cell's score is its items' mean."""
    offsets = offsets or {
        ("x", "m1"): -5.0,
        ("x", "m2"): 5.0,
        ("y", "m1"): 10.0,
        ("y", "m2"): -10.0,
    }
    scores: dict[tuple[int, str, str], float] = {}
    items: dict[str, list[float]] = {}
    for s in range(n_seeds):
        effect = rng.normal(0, sigma)
        for (b, m), off in offsets.items():
            p = (mu + effect + off + shift) / 100
            its = (rng.random(n_items) < p).astype(float)
            scores[(s, b, m)] = 100 * float(its.mean())
            items[f"{label}-{s}-{b}-{m}"] = its.tolist()
    return _row(label, scores), items


def test_interval_covers_the_true_mean() -> None:
    rng = np.random.default_rng(1)
    mu, covered, boards = 40.0, 0, 200
    for i in range(boards):
        row, items = _simulate(rng, "a", mu, n_seeds=10, n_items=200)
        interval = bootstrap_average(row, SECTION, n_boot=400, seed=i, items=items)
        assert interval.estimate == pytest.approx(row.average)
        assert interval.item_cells == 40 and interval.n_seeds == 10
        covered += interval.contains(mu)
    assert 0.88 <= covered / boards <= 0.99, covered


def test_items_widen_the_interval_and_one_seed_is_item_only() -> None:
    rng = np.random.default_rng(2)
    row, items = _simulate(rng, "a", 50.0, n_seeds=4, n_items=50)
    plain = bootstrap_average(row, SECTION, n_boot=1000)
    two = bootstrap_average(row, SECTION, n_boot=1000, items=items)
    assert (two.hi - two.lo) > (plain.hi - plain.lo) and two.estimate == plain.estimate
    assert "too narrow" in (plain.note or "")
    one, one_items = _simulate(rng, "b", 50.0, n_seeds=1, n_items=50)
    flat = bootstrap_average(one, SECTION, n_boot=500)
    assert flat.lo == flat.hi == pytest.approx(one.average) and "no interval" in (flat.note or "")
    by_items = bootstrap_average(one, SECTION, n_boot=500, items=one_items)
    assert by_items.lo < one.average < by_items.hi and "item sampling" in (by_items.note or "")


def test_paired_difference_detects_a_known_gap() -> None:
    rng = np.random.default_rng(3)
    a, _ = _simulate(rng, "a", 40.0, n_seeds=5, n_items=1000, sigma=6.0)
    b_scores = {
        (c.seed, c.benchmark, c.base_model): c.score + 8 + rng.normal(0, 0.3) for c in a.cells
    }
    b = _row("b", b_scores)
    c = paired_difference(b, a, SECTION, n_boot=2000)
    assert c.difference == pytest.approx(8.0, abs=0.3)
    assert c.excludes_zero and c.interval.contains(8.0) and c.p_value < 0.01
    assert (c.n_seeds, len(c.cells), c.full_grid, c.only_a, c.only_b) == (5, 20, True, [], [])
    # Unpaired, the seed noise (sd 6) swamps the gap; paired, it cancels.
    assert c.interval.hi - c.interval.lo < 1.0


def test_null_comparison_rarely_excludes_zero() -> None:
    rng = np.random.default_rng(4)
    false_alarms, pairs = 0, 100
    for i in range(pairs):
        a, ia = _simulate(rng, "a", 40.0, n_seeds=10, n_items=100)
        b, ib = _simulate(rng, "b", 40.0, n_seeds=10, n_items=100)
        c = paired_difference(a, b, SECTION, n_boot=400, seed=i, items={**ia, **ib})
        false_alarms += c.excludes_zero
    assert false_alarms <= 10, false_alarms


def test_partial_overlap_lists_cells_in_one_only() -> None:
    rng = np.random.default_rng(5)
    a, _ = _simulate(rng, "a", 40.0, n_seeds=3, n_items=10)
    b, _ = _simulate(rng, "b", 30.0, n_seeds=2, n_items=10)
    b.cells = [c for c in b.cells if not (c.seed == 1 and c.benchmark == "y")]
    c = paired_difference(a, b, SECTION, n_boot=200)
    assert c.n_seeds == 2 and len(c.cells) == 6 and not c.full_grid
    assert len(c.only_a) == 6 and c.only_b == []
    single = paired_difference(a, _row("c", {(0, "x", "m1"): 10.0}), SECTION, n_boot=200)
    assert single.interval.lo == single.interval.hi and not single.excludes_zero
    assert "cannot tell" in render_comparison([single])
    with pytest.raises(ValueError, match="share no cell"):
        paired_difference(a, _row("d", {(9, "x", "m1"): 10.0}), SECTION)


def test_fallback_summary_counts_causes_and_overrides() -> None:
    row = _row("a", {(s, "x", "m1"): 1.0 for s in range(6)})
    sources = ["evaluated", "fallback_no_model", "fallback_eval_failed", "fallback_eval_failed",
               "fallback_flagged", "evaluated"]  # fmt: skip
    for cell, source in zip(row.cells, sources, strict=True):
        cell.source = source  # type: ignore[assignment]
    row.cells[0].reviewed = "clean by ana: false positive"
    row.cells[4].reviewed = "flagged by bo: confirmed"
    assert fallback_summary(row) == {"no model": 1, "eval failed": 2, "flagged": 1, "overridden": 2}


def _eval_log(path: Path, values: Sequence[Any], epochs: int = 1) -> None:
    from inspect_ai.log import (
        EvalConfig,
        EvalDataset,
        EvalLog,
        EvalSample,
        EvalSpec,
        write_eval_log,
    )
    from inspect_ai.scorer import Score

    samples = [
        EvalSample(id=i, epoch=e + 1, input="q", target="a", scores={"match": Score(value=v)})
        for i, v in enumerate(values)
        for e in range(epochs)
    ]
    spec = EvalSpec(
        created="2026-01-01T00:00:00+00:00", task="arith", dataset=EvalDataset(),
        model="hf/tiny", config=EvalConfig(),
    )  # fmt: skip
    write_eval_log(EvalLog(eval=spec, samples=samples, status="success"), str(path))


@pytest.mark.parametrize("suffix", [".eval", ".json"])
def test_load_items_from_an_inspect_log(tmp_path: Path, suffix: str) -> None:
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    (run / "eval" / "metrics.json").write_text('{"score": 0.5}')
    _eval_log(run / "eval" / f"log{suffix}", ["C", "I", 1.0, 0.5], epochs=2)
    assert load_items(run) == [1.0, 0.0, 1.0, 0.5]


def test_load_items_is_none_without_a_readable_log(tmp_path: Path) -> None:
    assert load_items(tmp_path / "nothing") is None
    (tmp_path / "run" / "eval").mkdir(parents=True)
    assert load_items(tmp_path / "run") is None
    (tmp_path / "run" / "eval" / "broken.eval").write_bytes(b"PK\x03\x04 not a zip")
    (tmp_path / "run" / "eval" / "broken.json").write_text("{garbage")
    assert load_items(tmp_path / "run") is None
    _eval_log(tmp_path / "run" / "eval" / "judged.json", [{"a": 1}])
    assert load_items(tmp_path / "run") is None


def _record(agent: str, seed: int, score: float, **outcome: Any) -> RunRecord:
    rec = RunRecord(
        spec=RunSpec(run_id=f"{agent}-{seed}", agent="command", agent_cmd=agent,
                     base_model="ptb-tiny", benchmark="arith", budget_s=60, seed=seed),
        harness=harness_info(),
    )  # fmt: skip
    rec.outcome = Outcome(score=score, source=outcome.pop("source", "evaluated"), **outcome)
    return rec


def test_compare_agents_on_a_results_dir(tmp_path: Path) -> None:
    records = [_record("python good.py", s, 0.6 + 0.01 * s) for s in range(4)]
    records += [_record("python bad.py", s, 0.2 + 0.02 * s) for s in range(4)]
    records.append(_record("python bad.py", 9, 0.1, source="fallback_flagged", reviewed="x"))
    for r in records:
        save_run(tmp_path / "sweep" / r.spec.run_id, r)
    _eval_log(tmp_path / "sweep" / "python good.py-0" / "eval" / "x.eval", [1, 1, 0, 0, 1] * 20)
    board = scoring.leaderboard(records, baselines.published())
    (c,) = compare_agents(board, "GOOD", "bad.py", tmp_path, n_boot=500)
    assert c.difference == pytest.approx(40.0 - 1.0 * 1.5 + 0.0, abs=1.0)
    assert c.excludes_zero and c.n_seeds == 4 and c.interval.item_cells == 1
    assert [k.seed for k in c.only_b] == [9]
    text = render_comparison([c])
    assert (
        "− command [cmd 'python bad.py'" in text and "points over 4 shared cells (4 seeds)" in text
    )
    assert "interval excludes 0" in text and "Only command [cmd 'python bad.py'" in text
    with pytest.raises(ConfigError, match="several agents"):
        compare_agents(board, "python", "good", tmp_path)
    with pytest.raises(ConfigError, match="no agent matches"):
        compare_agents(board, "nope", "good", tmp_path)
    with pytest.raises(ConfigError, match="both name"):
        compare_agents(board, "good", "GOOD.py", tmp_path)
    table = render_intervals(board, tmp_path, n_boot=300)
    assert "| average [95% CI] |" in table and "flagged 1, overridden 1" in table
    assert "61.5 [" in table
