"""The scoring formula against the published PostTrainBench figures (DESIGN §6)."""

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


def _record(agent: str, bench: str, model: str, seed: int, score: float, source: str) -> RunRecord:
    spec = RunSpec(run_id=f"{agent}-{bench}-{model}-{seed}", agent=agent, base_model=model,
                   benchmark=bench, budget_s=60, seed=seed)  # fmt: skip
    rec = RunRecord(spec=spec, harness=harness_info())
    rec.outcome = Outcome(score=score, source=source, base_score=0.0)  # type: ignore[arg-type]
    return rec


def test_leaderboard_seeds_fallbacks_and_order() -> None:
    records = [
        _record("recipe", "arith", "ptb-tiny", 0, 0.5, "evaluated"),
        _record("recipe", "arith", "ptb-tiny", 1, 0.3, "evaluated"),
        _record("noop", "arith", "ptb-tiny", 0, 0.0, "evaluated"),
        _record("cheat", "arith", "ptb-tiny", 0, 0.01, "fallback_flagged"),
    ]
    records.append(records[0].model_copy(update={"outcome": None}))  # unfinished: ignored
    board = scoring.leaderboard(records, baselines.published())
    assert board.weighting == "uniform" and board.weights == {"arith": 1.0}
    assert [r.agent for r in board.rows] == ["recipe", "cheat", "noop"]
    recipe = board.rows[0]
    assert recipe.average == pytest.approx(40.0)
    assert recipe.std == pytest.approx(14.142, abs=1e-3)
    assert (recipe.n_seeds, recipe.n_runs, recipe.benchmarks) == (2, 2, {"arith": 40.0})
    assert board.rows[1].fallbacks == 1
    assert board.incomplete == [records[0].spec.run_id]
