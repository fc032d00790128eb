"""The scoring formula against the published PostTrainBench figures (DESIGN §6)."""

from typing import Any

import pytest

from posttrainbench.catalog import MODELS
from posttrainbench.records import Outcome, RunRecord, RunSpec
from posttrainbench.results import baselines, scoring
from posttrainbench.runner import harness_info

PUBLISHED_WEIGHTS = {
    "aime2025": 0.2265, "arenahardwriting": 0.0904, "bfcl": 0.0746, "gpqamain": 0.2246,
    "gsm8k": 0.0936, "healthbench": 0.1841, "humaneval": 0.1061,
}  # fmt: skip
OFFICIAL = ["Qwen/Qwen3-1.7B-Base", "Qwen/Qwen3-4B-Base", "HuggingFaceTB/SmolLM3-3B-Base",
            "google/gemma-3-4b-pt"]  # fmt: skip


def test_published_weights() -> None:
    w, kind = scoring.weights(baselines.published(), PUBLISHED_WEIGHTS)
    assert kind == "paper"
    assert w == pytest.approx(PUBLISHED_WEIGHTS, abs=5e-5)


def _cells(use_instruct: bool) -> scoring.Cells:
    table = baselines.published()
    cells = {}
    for m in OFFICIAL:
        info = MODELS.get(m)
        key = info.instruct_key if use_instruct else info.baseline_key
        assert key
        for b in PUBLISHED_WEIGHTS:
            cells[(b, m)] = table[key][b]
    return cells


def test_published_base_and_instruct_averages() -> None:
    w, _ = scoring.weights(baselines.published(), PUBLISHED_WEIGHTS)
    assert round(100 * scoring.weighted_average(_cells(False), w), 1) == 7.5
    assert round(100 * scoring.weighted_average(_cells(True), w), 1) == 51.1


def _record(
    agent: str, bench: str, model: str, seed: int, score: float, source: str = "evaluated",
    **spec: Any,
) -> RunRecord:  # fmt: skip
    spec.setdefault("budget_s", 60)
    run_id = f"{agent}-{bench}-{model}-{seed}-{sorted(spec.items())}"
    rec = RunRecord(
        spec=RunSpec(run_id=run_id, agent=agent, base_model=model, benchmark=bench, seed=seed,
                     **spec),
        harness=harness_info(),
    )  # fmt: skip
    rec.outcome = Outcome(score=score, source=source, base_score=0.0, reason=f"why {source}")  # type: ignore[arg-type]
    return rec


def test_weighted_average_refuses_a_missing_benchmark() -> None:
    w, _ = scoring.weights(baselines.published(), PUBLISHED_WEIGHTS)
    cells = {k: v for k, v in _cells(False).items() if k[0] != "aime2025"}
    with pytest.raises(ValueError, match="aime2025"):
        scoring.weighted_average(cells, w)


def test_leaderboard_seeds_fallbacks_and_order() -> None:
    records = [
        _record("recipe", "arith", "ptb-tiny", 0, 0.5, "evaluated"),
        _record("recipe", "arith", "ptb-tiny", 1, 0.3, "evaluated"),
        _record("noop", "arith", "ptb-tiny", 0, 0.0, "evaluated"),
        _record("cheat", "arith", "ptb-tiny", 0, 0.01, "fallback_flagged"),
    ]
    records.append(records[0].model_copy(update={"outcome": None}))  # unfinished: left out
    board = scoring.leaderboard(records, baselines.published())
    (section,) = board.sections
    assert section.weighting == "uniform" and section.weights == {"arith": 1.0}
    assert [r.label for r in section.rows] == ["recipe", "cheat", "noop"]
    recipe = section.rows[0]
    assert recipe.average == pytest.approx(40.0)
    assert recipe.std == pytest.approx(14.142, abs=1e-3)
    assert (recipe.seeds, recipe.complete_seeds, recipe.n_runs) == ([0, 1], [0, 1], 2)
    assert recipe.benchmarks["arith"].score == pytest.approx(40.0)
    assert section.rows[1].fallbacks["fallback_flagged"] == 1
    assert section.rows[1].benchmarks["arith"].fallbacks == 1
    assert [r.run_id for r in board.in_progress] == [records[0].spec.run_id]
    assert board.in_progress[0].stage == "prepare" and not board.failed


@pytest.mark.parametrize(
    ("first", "second", "tell"),
    [
        ({"agent": "command", "agent_cmd": "python a.py"},
         {"agent": "command", "agent_cmd": "python b.py"}, "cmd 'python a.py'"),
        ({"agent": "recipe", "budget_s": 300}, {"agent": "recipe", "budget_s": 600}, "budget 5m"),
    ],
)  # fmt: skip
def test_configs_of_one_agent_are_separate_rows(
    first: dict[str, object], second: dict[str, object], tell: str
) -> None:
    a = _record(str(first.pop("agent")), "arith", "ptb-tiny", 0, 0.2, **first)
    b = _record(str(second.pop("agent")), "arith", "ptb-tiny", 0, 0.6, **second)
    noop = _record("noop", "arith", "ptb-tiny", 0, 0.0)
    (section,) = scoring.leaderboard([a, b, noop], baselines.published()).sections
    labels = [r.label for r in section.rows]
    assert len(labels) == len(set(labels)) == 3
    assert labels[2] == "noop"  # unique label: no detail
    assert tell in labels[1] and labels[0] != labels[1]
    assert [r.average for r in section.rows] == pytest.approx([60.0, 20.0, 0.0])
    assert section.rows[1].config == a.spec.agent_config


def test_stray_arith_run_does_not_change_the_official_weights() -> None:
    model = "Qwen/Qwen3-1.7B-Base"
    records = [_record("claude", b, model, 0, 0.3, suite="ptb-v1.0") for b in PUBLISHED_WEIGHTS]
    records.append(_record("recipe", "arith", "ptb-tiny", 0, 0.5, suite="ptb-v1.0"))
    paper, uniform = scoring.leaderboard(records, baselines.published()).sections
    assert paper.weighting == "paper"
    assert paper.weights == pytest.approx(PUBLISHED_WEIGHTS, abs=5e-5)
    assert paper.base_models == [model] and [r.label for r in paper.rows] == ["claude"]
    assert paper.rows[0].average == pytest.approx(30.0)
    assert (uniform.weighting, uniform.weights) == ("uniform", {"arith": 1.0})
    assert [r.label for r in uniform.rows] == ["recipe"]


def test_missing_cell_is_listed_not_renormalised() -> None:
    models = ["Qwen/Qwen3-1.7B-Base", "Qwen/Qwen3-4B-Base"]
    v1_0 = {"suite": "ptb-v1.0"}  # the seven benchmarks are v1.0's
    records = [_record("a", b, m, 0, 0.4, **v1_0) for b in PUBLISHED_WEIGHTS for m in models]
    records += [_record("a", b, m, 1, 0.2, **v1_0) for b in PUBLISHED_WEIGHTS for m in models]
    records += [_record("b", b, m, 0, 0.9, **v1_0) for b in PUBLISHED_WEIGHTS for m in models]
    records = [r for r in records if not (r.spec.run_id.startswith("a-gsm8k-Qwen/Qwen3-4B-Base-1"))]
    records = [r for r in records if not (r.spec.run_id.startswith("b-aime2025-Qwen/Qwen3-1.7B"))]
    (section,) = scoring.leaderboard(records, baselines.published()).sections
    rows = {r.label: r for r in section.rows}
    assert rows["a"].average == pytest.approx(40.0)  # seed 1 lacks a cell: only seed 0 counts
    assert (rows["a"].seeds, rows["a"].complete_seeds, rows["a"].std) == ([0, 1], [0], None)
    assert [(k.seed, k.benchmark, k.base_model) for k in rows["a"].missing] == [
        (1, "gsm8k", "Qwen/Qwen3-4B-Base")
    ]
    assert rows["b"].average is None and rows["b"].complete_seeds == []
    assert [(k.seed, k.benchmark, k.base_model) for k in rows["b"].missing] == [
        (0, "aime2025", "Qwen/Qwen3-1.7B-Base")
    ]
    assert [r.label for r in section.rows] == ["a", "b"]  # no average sorts last


def test_fallbacks_counted_per_cause() -> None:
    records = [
        _record("x", "arith", "ptb-tiny", 0, 0.1, "fallback_no_model"),
        _record("x", "arith", "ptb-tiny", 1, 0.1, "fallback_eval_failed"),
        _record("x", "arith", "ptb-tiny", 2, 0.1, "fallback_eval_failed"),
        _record("x", "arith", "ptb-tiny", 3, 0.7, "evaluated"),
    ]
    (row,) = scoring.leaderboard(records, baselines.published()).sections[0].rows
    assert row.fallbacks == {
        "fallback_no_model": 1, "fallback_eval_failed": 2, "fallback_flagged": 0
    }  # fmt: skip
    assert row.n_fallbacks == 3
    assert [(c.seed, c.source, c.reason) for c in row.fallback_cells] == [
        (0, "fallback_no_model", "why fallback_no_model"),
        (1, "fallback_eval_failed", "why fallback_eval_failed"),
        (2, "fallback_eval_failed", "why fallback_eval_failed"),
    ]
