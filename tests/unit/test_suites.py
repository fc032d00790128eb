"""Suites wired through runs, sweeps, boards and published results: one board per suite."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from posttrainbench.catalog.suites import SUITES, V1_0, V1_2, suite, suite_for_run
from posttrainbench.errors import ConfigError, UnknownNameError
from posttrainbench.records import EvalMetrics, Leaderboard, Outcome, RunRecord, RunSpec
from posttrainbench.report import build_leaderboard
from posttrainbench.report.run_page import render_run_page
from posttrainbench.report.site import render_index
from posttrainbench.report.tables import to_csv, to_markdown, to_rich
from posttrainbench.results import baselines, scoring
from posttrainbench.results.published import (
    PUBLISHED_SUFFIX,
    import_reference,
    load_published,
    published_for,
    save_imported,
    shipped_dir,
    with_published_rows,
)
from posttrainbench.results.store import save_run
from posttrainbench.runner import harness_info
from posttrainbench.scale.sweep import AgentEntry, SweepSpec
from tests.conftest import PtbRunner

MODELS = ["Qwen/Qwen3-1.7B-Base", "Qwen/Qwen3-4B-Base", "HuggingFaceTB/SmolLM3-3B-Base",
          "google/gemma-3-4b-pt"]  # fmt: skip


def _record(bench: str, suite_id: str, model: str = MODELS[0], score: float = 0.3,
            agent: str = "claude", **spec: Any) -> RunRecord:  # fmt: skip
    rec = RunRecord(
        spec=RunSpec(run_id=f"{agent}-{bench}-{model}-{suite_id}", agent=agent, base_model=model,
                     benchmark=bench, budget_s=60, suite=suite_id, **spec),
        harness=harness_info(),
    )  # fmt: skip
    rec.outcome = Outcome(score=score, source="evaluated", base_score=0.0)
    return rec


# --- weights ------------------------------------------------------------------------------------


@pytest.mark.parametrize("s", [V1_2, V1_0], ids=lambda s: s.id)
def test_derived_weights_equal_the_published_factors(s: Any) -> None:
    w, kind = scoring.weights(baselines.published(), s.benchmarks)
    assert kind == "paper" and sorted(w) == sorted(s.factors)
    for b, f in s.factors.items():
        assert abs(w[b] - f) < 1e-9, b


def test_a_full_v1_2_grid_is_weighted_by_the_v1_2_factors() -> None:
    records = [_record(b, "ptb-v1.2", m) for b in V1_2.benchmarks for m in MODELS]
    records.append(_record("arith", "ptb-v1.2", "ptb-tiny", 0.5, agent="recipe"))
    board = scoring.leaderboard(records, baselines.published())
    assert board.suite == "ptb-v1.2" and board.other_suite == []
    paper, uniform = board.sections
    assert paper.weighting == "paper" and sorted(paper.weights) == sorted(V1_2.benchmarks)
    for b, f in V1_2.factors.items():
        assert abs(paper.weights[b] - f) < 1e-9, b
    assert paper.rows[0].average == pytest.approx(30.0)
    assert (uniform.weights, [r.label for r in uniform.rows]) == ({"arith": 1.0}, ["recipe"])


# --- one suite per board ------------------------------------------------------------------------


def _mixed() -> list[RunRecord]:
    v12 = [_record(b, "ptb-v1.2") for b in V1_2.benchmarks]
    v10 = [_record(b, "ptb-v1.0", agent="old") for b in V1_0.benchmarks]
    return v12 + v10


def test_runs_of_two_suites_are_refused_without_a_suite() -> None:
    with pytest.raises(ConfigError) as err:
        scoring.leaderboard(_mixed(), baselines.published())
    assert "ptb-v1.0 (7 runs)" in err.value.message and "ptb-v1.2 (6 runs)" in err.value.message
    assert "\n" not in err.value.message and "--suite" in (err.value.hint or "")


@pytest.mark.parametrize(("name", "kept", "left"), [("ptb-v1.2", 6, 7), ("ptb-v1.0", 7, 6)])
def test_a_named_suite_counts_only_its_runs(name: str, kept: int, left: int) -> None:
    board = scoring.leaderboard(_mixed(), baselines.published(), board_suite=suite(name))
    (paper,) = board.sections
    assert board.suite == name and sum(r.n_runs for r in paper.rows) == kept
    assert sorted(paper.weights) == sorted(suite(name).benchmarks)
    other = "ptb-v1.0" if name == "ptb-v1.2" else "ptb-v1.2"
    assert len(board.other_suite) == left
    assert {r.reason for r in board.other_suite} == {f"suite {other}, board {name}"}
    assert {r.suite for r in board.other_suite} == {other}


def test_an_official_benchmark_outside_the_suite_is_left_out() -> None:
    """A v1.2 run of BFCL (not creatable by ptb, but a run.json can say so) never gets a
    weight on the v1.2 board."""
    records = [_record(b, "ptb-v1.2") for b in (*V1_2.benchmarks, "bfcl")]
    board = scoring.leaderboard(records, baselines.published())
    assert "bfcl" not in board.sections[0].weights
    (left,) = board.other_suite
    assert left.benchmark == "bfcl" and left.reason == "benchmark bfcl is not in suite ptb-v1.2"


def test_report_names_the_suite_and_lists_other_suites(tmp_path: Path) -> None:
    for r in _mixed():
        save_run(tmp_path / r.spec.run_id.replace("/", "_"), r)
    with pytest.raises(ConfigError, match="different suites"):
        build_leaderboard(tmp_path)
    board = build_leaderboard(tmp_path, "ptb-v1.0")
    md = to_markdown(board)
    assert "## Leaderboard, suite ptb-v1.0, paper weighting" in md
    assert "Other suite (not counted on the ptb-v1.0 board):" in md
    assert "suite ptb-v1.2, board ptb-v1.0" in md
    rows = list(csv.DictReader(to_csv(board).splitlines()))
    assert {r["suite"] for r in rows if r["section"] == "paper"} == {"ptb-v1.0"}
    assert [r["suite"] for r in rows if r["section"] == "other_suite"] == ["ptb-v1.2"] * 6
    console = Console(width=300, record=True)
    console.print(to_rich(board))
    assert "Leaderboard, suite ptb-v1.0, paper weighting" in console.export_text()
    page = render_index(tmp_path, suite="ptb-v1.0")
    assert "PostTrainBench leaderboard · suite ptb-v1.0</h1>" in page
    run_dir = next(d for d in tmp_path.iterdir() if d.name.endswith("ptb-v1.0"))
    assert "<tr><td>suite</td><td>ptb-v1.0</td></tr>" in render_run_page(run_dir)


# --- runs and sweeps ----------------------------------------------------------------------------


def test_suite_for_run_refuses_an_official_benchmark_outside_it() -> None:
    with pytest.raises(ConfigError) as err:
        suite_for_run(None, "bfcl")
    assert "benchmark bfcl is not in suite ptb-v1.2" in err.value.message
    assert "--suite ptb-v1.0" in (err.value.hint or "")
    assert suite_for_run("ptb-v1.0", "bfcl") is V1_0
    assert {suite_for_run(s, "arith").id for s, _ in SUITES} == {"ptb-v1.0", "ptb-v1.2"}
    with pytest.raises(UnknownNameError, match=r"did you mean 'ptb-v1\.2'"):
        suite_for_run("ptb-v1.3", "gsm8k")


def _sweep(**kw: Any) -> SweepSpec:
    return SweepSpec(
        name="s", agents=[AgentEntry(agent="noop")], base_models=["ptb-tiny"], budget=60,
        sandbox="host", **kw,
    )  # fmt: skip


def test_sweep_runs_carry_the_sweeps_suite() -> None:
    v10 = _sweep(benchmarks=["bfcl", "arith"], suite="ptb-v1.0").expand()
    assert {r.suite for r in v10} == {"ptb-v1.0"}
    v12 = _sweep(benchmarks=["arith"]).expand()
    assert [r.suite for r in v12] == ["ptb-v1.2"]
    arith_v10 = next(r for r in v10 if r.benchmark == "arith")
    assert arith_v10.run_id != v12[0].run_id  # another suite is another run
    with pytest.raises(ConfigError, match=r"bfcl is not in suite ptb-v1\.2"):
        _sweep(benchmarks=["arith", "bfcl"]).expand()
    with pytest.raises(UnknownNameError, match="did you mean"):
        _sweep(benchmarks=["arith"], suite="ptb-v12").expand()


def test_run_refuses_a_benchmark_outside_its_suite_before_creating_anything(
    ptb: PtbRunner, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    args = ["run", "--agent", "noop", "--base-model", "ptb-tiny", "--budget", "1m",
            "--results", str(results)]  # fmt: skip
    done = ptb(*args, "--benchmark", "bfcl")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "not in suite ptb-v1.2" in line and "hint: pass --suite ptb-v1.0" in line
    done = ptb(*args, "--benchmark", "arith", "--suite", "ptb-v1.3")
    assert done.returncode == 2 and "did you mean 'ptb-v1.2'" in done.stderr
    assert not results.exists()


# --- published results of both versions ---------------------------------------------------------


def test_shipped_v1_2_rows_reproduce_the_published_averages() -> None:
    board = load_published("ptb-v1.2")
    assert board.suite == "ptb-v1.2" and board.benchmarks == sorted(V1_2.benchmarks)
    assert board.source.repo == "aisa-group/posttrainbench-website"
    assert board.source.commit == "b645ba73645c2969c919fad89d680eba5c70c02b"
    assert board.source.folder == "data/v1.2/"
    assert not board.baselines  # v1.2 ships none: v1.0's rows, over six benchmarks
    assert board.site_weights is not None
    assert board.weights == pytest.approx(board.site_weights, abs=1e-12)
    assert len(board.agents) == 29 and all(len(a.cells) == 24 for a in board.agents)
    for a in board.agents:
        assert a.site_average is not None and a.average is not None, a.name
        assert a.average == pytest.approx(a.site_average, abs=1e-9), a.name
        assert round(100 * a.average, 1) == round(100 * a.site_average, 1), a.name
    top = [(a.name, round(100 * (a.average or 0), 1)) for a in board.agents[:3]]
    # the release post: "Fable 5.1 leads at 44.7%, followed by Opus 5.5 at 43.7% and GPT-6
    # (Astra) at 42.0%"
    assert top == [("Fable_5.1_(Max)", 44.7), ("Opus-5.5_(Max)", 43.7), ("GPT-6-Astra", 42.0)]


def test_shipped_v1_0_board_is_v1_0s() -> None:
    board = load_published("ptb-v1.0")
    assert board.suite == "ptb-v1.0" and "bfcl" in board.benchmarks
    assert load_published().suite == "ptb-v1.2"  # the default suite's


def test_with_published_shows_the_rows_of_the_boards_suite(tmp_path: Path) -> None:
    for name in ("ptb-v1.2", "ptb-v1.0"):
        board = Leaderboard(suite=name, sections=[])
        (published,) = published_for(board, tmp_path)
        assert published.suite == name
        shown = with_published_rows(board, published)
        (section,) = shown.sections
        assert sorted(section.weights) == sorted(suite(name).benchmarks)
    v12 = with_published_rows(Leaderboard(suite="ptb-v1.2", sections=[]), load_published())
    top = v12.sections[0].rows[0]
    assert top.label == "Fable_5.1_(Max)" + PUBLISHED_SUFFIX
    assert top.average == pytest.approx(44.70848721329663, abs=1e-9)
    with pytest.raises(ValueError, match=r"ptb-v1\.0"):
        with_published_rows(Leaderboard(suite="ptb-v1.2", sections=[]), load_published("ptb-v1.0"))
    # an import of the other version is not shown on this suite's board
    save_imported(tmp_path, "old", load_published("ptb-v1.0"))
    (published,) = published_for(Leaderboard(suite="ptb-v1.2", sections=[]), tmp_path)
    assert published.suite == "ptb-v1.2" and published.source.folder == "data/v1.2/"
    (published,) = published_for(Leaderboard(suite="ptb-v1.0", sections=[]), tmp_path)
    assert published == load_published("ptb-v1.0")


def test_import_of_the_websites_v1_2_layout(tmp_path: Path) -> None:
    """The website keeps data/factors-v1.2.json beside data/v1.2/; both layouts import."""
    data = tmp_path / "data"
    shutil.copytree(shipped_dir("ptb-v1.2"), data / "v1.2")
    (data / "v1.2" / "SOURCE.md").unlink()
    (data / "v1.2" / "factors-v1.2.json").rename(data / "factors-v1.2.json")
    board = import_reference(data / "v1.2", repo="o/r", commit="c" * 40)
    assert board.suite == "ptb-v1.2" and board.site_weights == V1_2.factors
    assert board.agents == load_published("ptb-v1.2").agents
    shutil.copytree(shipped_dir("ptb-v1.0"), data, dirs_exist_ok=True)
    assert import_reference(data).suite == "ptb-v1.0"


def test_cli_report_site_and_show_name_the_suite(ptb: PtbRunner, tmp_path: Path) -> None:
    results = tmp_path / "results"
    for r in _mixed():
        save_run(results / r.spec.run_id.replace("/", "_"), r)
    for args in (["report", str(results)], ["site", str(results), "-o", str(tmp_path / "s")]):
        done = ptb(*args)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert "ptb-v1.0 (7 runs), ptb-v1.2 (6 runs)" in line and "hint: pass --suite" in line
    done = ptb("report", str(results), "--suite", "ptb-v1.0", "--with-published")
    assert done.returncode == 0, done.stderr
    assert "## Leaderboard, suite ptb-v1.0, paper weighting" in done.stdout
    assert "| Opus-4.6 (published) |" in done.stdout and "Fable" not in done.stdout
    assert "Other suite (not counted on the ptb-v1.0 board):" in done.stdout
    done = ptb("report", str(results), "--suite", "ptb-v1.2", "--with-published")
    # scored over this board's grid (one base model), so not the site's 44.7
    assert "| Fable_5.1_(Max) (published) |" in done.stdout
    head = "| agent | average | aime2025 | arenahardwriting | gpqamain | gsm8k | healthbench |"
    assert head + " humaneval | runs |" in done.stdout  # six benchmarks: no BFCL column
    done = ptb("site", str(results), "--suite", "ptb-v1.2", "-o", str(tmp_path / "s"))
    assert done.returncode == 0, done.stderr
    assert "suite ptb-v1.2</h1>" in (tmp_path / "s" / "index.html").read_text()
    run_dir = next(d for d in results.iterdir() if d.name.endswith("ptb-v1.0"))
    shown = ptb("show", str(run_dir))
    assert shown.returncode == 0 and re.search(r"suite\s+ptb-v1\.0", shown.stdout), shown.stdout


# --- measured baselines, by suite ---------------------------------------------------------------


def _measured(bench: str, score: float, suite_id: str | None) -> EvalMetrics:
    return EvalMetrics(
        benchmark=bench, split="test", score=score, n_samples=10, model_path="m", suite=suite_id
    )


def test_measured_baselines_are_kept_and_found_by_suite(tmp_path: Path) -> None:
    """A ptb-v1.0 measurement (one seed) is never the base score of a ptb-v1.2 run; one stored
    before suites (no suite recorded, directly under baselines/) counts as ptb-v1.0."""
    cache = tmp_path / "baselines"
    ref = baselines.record_measured(cache, "ptb-tiny", _measured("arith", 0.3, "ptb-v1.0"))
    assert ref.detail == str(cache / "ptb-v1.0" / "ptb-tiny__arith.json")
    assert baselines.lookup(cache, "ptb-tiny", "arith", "ptb-v1.2") is None
    found = baselines.lookup(cache, "ptb-tiny", "arith", "ptb-v1.0")
    assert found and found.source == "measured" and found.score == 0.3

    published = baselines.published()["Qwen3-1.7B-Base"]["gsm8k"]
    legacy = cache / "Qwen3-1.7B-Base__gsm8k.json"
    legacy.write_text(_measured("gsm8k", 0.5, None).model_dump_json())
    old = baselines.lookup(cache, "Qwen3-1.7B-Base", "gsm8k", "ptb-v1.0")
    assert old and old.source == "measured" and old.score == 0.5 and old.detail == str(legacy)
    new = baselines.lookup(cache, "Qwen3-1.7B-Base", "gsm8k", "ptb-v1.2")
    assert new and new.source == "published" and new.score == published

    v10, measured_v10 = baselines.table(cache, "ptb-v1.0")
    v12, measured_v12 = baselines.table(cache, "ptb-v1.2")
    assert measured_v10 == ["Qwen3-1.7B-Base/gsm8k", "ptb-tiny/arith"] and measured_v12 == []
    assert v10["Qwen3-1.7B-Base"]["gsm8k"] == 0.5 and v12["Qwen3-1.7B-Base"]["gsm8k"] == published
    assert "ptb-tiny" not in v12

    # a file of another suite under this suite's folder is ignored (measured again)
    (cache / "ptb-v1.2").mkdir()
    (cache / "ptb-v1.2" / "ptb-tiny__arith.json").write_text(
        _measured("arith", 0.9, "ptb-v1.0").model_dump_json()
    )
    assert baselines.lookup(cache, "ptb-tiny", "arith", "ptb-v1.2") is None


def test_a_run_measures_its_base_score_under_its_suite(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from posttrainbench import runner

    settings = settings.model_copy(update={"cache_dir": tmp_path / "cache"})
    asked: list[str | None] = []

    def measure(model: Path, bench: str, family: Any, out: Any, **kw: Any) -> EvalMetrics:
        asked.append(kw["options"].suite)
        assert out.root.parent.name == kw["options"].suite
        return _measured(bench, 0.25 if kw["options"].suite == "ptb-v1.0" else 0.75,
                         kw["options"].suite)  # fmt: skip

    monkeypatch.setattr(runner, "run_evaluation", measure)
    monkeypatch.setattr(type(runner.MODELS.get("ptb-tiny")), "locate", lambda *a: tmp_path)
    spec = RunSpec(run_id="r", agent="noop", base_model="ptb-tiny", benchmark="arith",
                   budget_s=60, suite="ptb-v1.0")  # fmt: skip
    assert runner.resolve_baseline(settings, spec).score == 0.25
    assert runner.resolve_baseline(settings, spec).score == 0.25  # cached: not measured again
    v12 = spec.model_copy(update={"suite": "ptb-v1.2"})
    assert runner.resolve_baseline(settings, v12).score == 0.75  # not v1.0's
    assert asked == ["ptb-v1.0", "ptb-v1.2"]
    assert (settings.baselines_dir / "ptb-v1.2" / "ptb-tiny__arith.json").is_file()
