"""The reference harness's published tables: import, our recomputed averages, leaderboard rows."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from posttrainbench.errors import ConfigError
from posttrainbench.records import Leaderboard, Outcome, RunRecord, RunSpec
from posttrainbench.results import baselines, scoring
from posttrainbench.results.published import (
    PUBLISHED_SUFFIX,
    PublishedBoard,
    import_reference,
    load_imported,
    load_published,
    save_imported,
    shipped_dir,
    with_published_rows,
)
from posttrainbench.runner import harness_info

BENCHMARKS = ["aime2025", "arenahardwriting", "bfcl", "gpqamain", "gsm8k", "healthbench",
              "humaneval"]  # fmt: skip
BASE_MODELS = ["Qwen3-1.7B-Base", "Qwen3-4B-Base", "SmolLM3-3B-Base", "gemma-3-4b-pt"]
# paper-plots/data/fig1_leaderboard.csv label → the agent's name in data/
FIG1_AGENTS = {
    "Opus 4.6": "Opus-4.6",
    "Gemini 3.1 Pro": "Gemini-3.1-Pro",
    "GPT-5.2": "GPT-5.2",
    "GPT 5.4 (High)": "GPT-5.4-High",
    "GPT-5.1 Codex Max": "GPT-5.1-Codex-Max",
    "Gemini 3 Pro": "Gemini-3-Pro",
    "GPT 5.3 Codex (High)": "GPT-5.3-Codex_High",
    "GPT-5.2 Codex": "GPT-5.2-Codex",
    "Opus 4.5": "Opus-4.5",
    "Sonnet 4.6": "claude_non_api_claude-sonnet-4-6_10h",
    "GLM-5": "opencode_zai_glm-5_10h_run2",
    "Sonnet 4.5": "claude_claude-sonnet-4-5_10h_final_v3",
}


@pytest.fixture(scope="module")
def board() -> PublishedBoard:
    return load_published("ptb-v1.0")


def test_shipped_board_has_the_agents_and_cells(board: PublishedBoard) -> None:
    assert board.source.repo == "aisa-group/posttrainbench-website"
    assert board.source.commit == "49cdae1cdd270237bd567d966f1164be87abeabe"
    assert board.benchmarks == BENCHMARKS and board.base_models == BASE_MODELS
    agents = {a.name: a for a in board.agents}
    assert len(agents) == 24 and set(FIG1_AGENTS.values()) <= set(agents)
    assert all(len(a.cells) == 28 for a in agents.values())
    opus = agents["Opus-4.6"]
    assert opus.n_seeds == 3 and opus.sources == [
        "aggregated_avg_Opus-4.6.csv",
        "aggregated_std_Opus-4.6.csv",
    ]
    cell = {(c.benchmark, c.base_model): c for c in opus.cells}
    # aggregated_avg_Opus-4.6.csv / aggregated_std_Opus-4.6.csv, row Qwen3-4B-Base
    assert cell[("bfcl", "Qwen3-4B-Base")].score == 0.9666666666666667
    assert cell[("bfcl", "Qwen3-4B-Base")].std == 0.05773502691896257
    # final_opencode_opencode_glm-4.7-free_10h.csv, where the aggregated_ table says ERR
    glm = {
        (c.benchmark, c.base_model): c for c in agents["opencode_opencode_glm-4.7-free_10h"].cells
    }
    assert glm[("gsm8k", "gemma-3-4b-pt")].score == 0.06141015921152388
    assert glm[("gsm8k", "gemma-3-4b-pt")].fallback == "error"
    assert glm[("gsm8k", "SmolLM3-3B-Base")].fallback is None
    assert {b.name for b in board.baselines} == {"baseline", "baseline_fewshot"}


def test_weights_and_averages_agree_with_the_site(board: PublishedBoard) -> None:
    assert board.site_weights is not None
    assert board.weights == pytest.approx(board.site_weights, abs=1e-12)
    with_site = [a for a in board.agents if a.site_average is not None]
    assert len(with_site) == 11
    for a in with_site:
        assert a.average == pytest.approx(a.site_average, abs=1e-12), a.name
    with (shipped_dir("ptb-v1.0") / "fig1_leaderboard.csv").open() as f:
        fig1 = {row["Method"]: float(row["Avg"]) for row in csv.DictReader(f)}
    agents = {a.name: a for a in board.agents}
    for label, name in FIG1_AGENTS.items():
        average = agents[name].average
        assert average is not None and round(100 * average, 1) == fig1[label], label
    base = next(b for b in board.baselines if b.name == "baseline").models
    for label, suffix in (("Base Model", "-Base"), ("Official Instruct Models", "")):
        keys = [m.removesuffix("-Base") if suffix == "" else m for m in BASE_MODELS]
        keys = [k.replace("gemma-3-4b-pt", "gemma-3-4b-it") if suffix == "" else k for k in keys]
        cells = {(b, m): base[k][b] for m, k in zip(BASE_MODELS, keys, strict=True)
                 for b in BENCHMARKS}  # fmt: skip
        assert round(100 * scoring.weighted_average(cells, board.weights), 1) == fig1[label]


def test_with_published_rows_adds_a_paper_section(board: PublishedBoard) -> None:
    shown = with_published_rows(Leaderboard(sections=[]), board)
    (section,) = shown.sections
    assert section.weighting == "paper" and len(section.rows) == 24
    top = section.rows[0]
    assert top.label == "Opus-4.6-1M" + PUBLISHED_SUFFIX
    assert top.average == pytest.approx(24.818813376478985, abs=1e-9)
    assert top.std == pytest.approx(0.5192353995318209, abs=1e-9)
    assert {c.run_id for c in top.cells} == {"published:Opus-4.6-1M"}
    assert {c.base_model for c in top.cells} >= {"Qwen/Qwen3-1.7B-Base", "google/gemma-3-4b-pt"}


def _record(agent: str, model: str, score: float) -> RunRecord:
    rec = RunRecord(
        spec=RunSpec(run_id=f"{agent}-{model}", agent=agent, base_model=model,
                     benchmark="gsm8k", budget_s=60, suite="ptb-v1.0"),
        harness=harness_info(),
    )  # fmt: skip
    rec.outcome = Outcome(score=score, source="evaluated", base_score=0.0)
    return rec


def test_with_published_rows_scores_on_the_boards_own_grid(board: PublishedBoard) -> None:
    mine = scoring.leaderboard(
        [_record("recipe", "Qwen/Qwen3-4B-Base", 0.9)], baselines.published()
    )
    shown = with_published_rows(mine, board)
    (section,) = shown.sections
    assert section.weights == {"gsm8k": 1.0}
    rows = {r.label: r for r in section.rows}
    assert rows["recipe"].average == pytest.approx(90.0)
    opus = rows["Opus-4.6" + PUBLISHED_SUFFIX]
    assert opus.average == pytest.approx(100 * 0.5218599949456659)
    assert opus.std is None  # the site's std is over the full grid, not this one
    assert mine.sections[0].rows[0].label == "recipe" and len(mine.sections[0].rows) == 1


def test_import_stores_and_loads(tmp_path: Path, board: PublishedBoard) -> None:
    path = save_imported(tmp_path, "reference", board)
    assert path == tmp_path / "imported" / "reference" / "published.json"
    (loaded,) = load_imported(tmp_path)
    assert loaded == board


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(shipped_dir("ptb-v1.0"), folder)
    (folder / "SOURCE.md").unlink()
    return folder


def test_import_of_a_folder_reads_it(tmp_path: Path, board: PublishedBoard) -> None:
    imported = import_reference(_copy(tmp_path), repo="o/r", commit="c" * 40)
    assert imported.source.repo == "o/r" and imported.source.commit == "c" * 40
    assert imported.agents == board.agents


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("aggregated_avg_Opus-4.6.csv", "model,aime2025\nQwen3-4B-Base,0.1,0.2\n", "fields"),
        ("aggregated_avg_Opus-4.6.csv", "model,aime2025\nQwen3-4B-Base,zero\n", "not a number"),
        ("final_x.csv", "name,aime2025\nQwen3-4B-Base,0.1\n", "'model'"),
        ("aggregated_avg_Opus-4.6.csv", "model,aime2025\nQwen3-4B-Base,1.5\n", "[0, 1]"),
        ("aggregated_baseline.csv", "model,aime2025\n", "no rows"),
    ],
)
def test_corrupt_csv_is_a_config_error(tmp_path: Path, name: str, text: str, problem: str) -> None:
    folder = _copy(tmp_path)
    (folder / name).write_text(text)
    with pytest.raises(ConfigError) as err:
        import_reference(folder)
    assert name in err.value.message and problem in err.value.message
    assert err.value.hint


def test_import_of_a_folder_without_tables(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no aggregated_avg"):
        import_reference(tmp_path)
