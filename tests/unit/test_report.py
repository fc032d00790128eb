"""The report over a results dir on disk: bad runs are listed with why, never break the board."""

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from posttrainbench.errors import ResultsDirError
from posttrainbench.records import (
    SCHEMA_VERSION,
    ErrorInfo,
    Outcome,
    RunRecord,
    RunSpec,
    StageStatus,
)
from posttrainbench.report import build_leaderboard
from posttrainbench.report.tables import RENDERERS, to_markdown, to_rich
from posttrainbench.results import baselines, scoring
from posttrainbench.results.store import save_run, scan_runs
from posttrainbench.runner import harness_info


def _run(run_id: str, outcome: Outcome | None = None, **spec: Any) -> RunRecord:
    spec = {"agent": "command", "base_model": "ptb-tiny", "benchmark": "arith", "budget_s": 60,
            **spec}  # fmt: skip
    record = RunRecord(spec=RunSpec(run_id=run_id, **spec), harness=harness_info())
    record.outcome = outcome
    return record


def _done(record: RunRecord, *stages: str) -> RunRecord:
    for s in stages:
        record.stages[s] = StageStatus(state="done")  # type: ignore[index]
    return record


def _results(root: Path) -> Path:
    sweep = root / "sweep"
    good_a = _run(
        "run-a",
        Outcome(score=0.5, source="evaluated", reviewed="clean by ana at 2026-12-01 10:00Z: ok"),
        agent_cmd="python a.py",
    )
    good_b = _run(
        "run-b",
        Outcome(score=0.1, source="fallback_flagged", base_score=0.1, reason="tampered"),
        agent_cmd="python b.py",
    )
    save_run(sweep / "run-a", good_a)
    save_run(sweep / "run-b", good_b)
    for name, text in [
        ("corrupt", "{garbage"),
        ("foreign", '{"hello": 1}'),
        (
            "future",
            good_a.model_dump_json().replace(
                f'"schema_version":{SCHEMA_VERSION}', '"schema_version":99'
            ),
        ),
    ]:
        (sweep / name).mkdir()
        (sweep / name / "run.json").write_text(text)
    failed = _done(_run("run-failed"), "prepare")
    failed.stages["solve"] = StageStatus(
        state="failed", error=ErrorInfo(type="InfrastructureError", message="GPU preflight failed")
    )
    save_run(sweep / "run-failed", failed)
    running = _done(_run("run-running"), "prepare")
    running.stages["solve"] = StageStatus(state="running")
    save_run(sweep / "run-running", running)
    # Planted by the agent inside a run: a scored run and a corrupt one, neither is ours.
    planted = _run("planted", Outcome(score=1.0, source="evaluated"), agent="evil")
    save_run(sweep / "run-a" / "workspace", planted)
    save_run(sweep / "run-a" / "final_model", planted)
    (sweep / "run-a" / "agent" / "home" / "x").mkdir(parents=True)
    (sweep / "run-a" / "agent" / "home" / "x" / "run.json").write_text("{garbage")
    (root / "linked").symlink_to(sweep, target_is_directory=True)  # not followed
    return root


def test_scan_runs_yields_errors_and_skips_planted(tmp_path: Path) -> None:
    root = _results(tmp_path)
    found = {p.relative_to(root).as_posix(): r for p, r in scan_runs(root)}
    assert sorted(found) == [
        f"sweep/{n}" for n in ("corrupt", "foreign", "future", "run-a", "run-b", "run-failed",
                               "run-running")
    ]  # fmt: skip
    assert isinstance(found["sweep/corrupt"], ResultsDirError)
    assert isinstance(found["sweep/run-a"], RunRecord)
    with pytest.raises(ResultsDirError, match="not a directory"):
        list(scan_runs(tmp_path / "nope"))


def test_build_leaderboard_lists_left_out_runs(tmp_path: Path) -> None:
    board = build_leaderboard(_results(tmp_path))
    (section,) = board.sections
    assert section.weighting == "uniform"
    assert [(r.label, r.average, r.n_runs) for r in section.rows] == [
        ("command [cmd 'python a.py', budget 1m, sandbox host]", 50.0, 1),
        ("command [cmd 'python b.py', budget 1m, sandbox host]", 10.0, 1),
    ]
    assert section.rows[1].fallbacks["fallback_flagged"] == 1
    assert "a person overrode" in to_markdown(board) and "clean by ana" in to_markdown(board)
    unreadable = {u.path: u.reason for u in board.unreadable}
    assert sorted(unreadable) == ["sweep/corrupt", "sweep/foreign", "sweep/future"]
    assert "sweep/corrupt/run.json is not a valid RunRecord" in unreadable["sweep/corrupt"]
    assert "no schema_version" in unreadable["sweep/foreign"]
    assert "schema_version 99 is newer" in unreadable["sweep/future"]
    assert all("\n" not in reason for reason in unreadable.values())
    assert [(r.run_id, r.stage, r.reason) for r in board.failed] == [
        ("run-failed", "solve", "GPU preflight failed")
    ]
    assert [(r.run_id, r.stage, r.reason) for r in board.in_progress] == [
        ("run-running", "solve", "stage solve is running")
    ]

    md = to_markdown(board)
    assert "| 10.0* |" in md and "tampered" in md and "fallback_flagged" in md
    for text in ("sweep/foreign", "no schema_version", "GPU preflight failed", "run-running"):
        assert text in md
    assert "evil" not in md and "home" not in md

    rows = list(csv.DictReader(io.StringIO(RENDERERS["csv"](board))))
    assert [(r["section"], r["agent"]) for r in rows][:2] == [
        ("uniform", section.rows[0].label),
        ("uniform", section.rows[1].label),
    ]
    assert [r["section"] for r in rows[2:]] == ["unreadable"] * 3 + ["failed", "in_progress"]
    assert rows[1]["fallback_flagged"] == "1" and rows[1]["arith"] == "10.0000"

    data = json.loads(RENDERERS["json"](board))
    assert data["schema_version"] >= 2
    assert len(data["unreadable"]) == 3 and data["failed"][0]["stage"] == "solve"
    assert data["in_progress"][0]["reason"] == "stage solve is running"
    assert data["sections"][0]["rows"][1]["cells"][0]["source"] == "fallback_flagged"

    console = Console(record=True, width=200)
    console.print(to_rich(board))
    text = console.export_text()
    for needle in ("cmd 'python a.py'", "10.0*", "uniform", "sweep/corrupt", "newer",
                   "GPU preflight failed", "stage solve is running", "tampered"):  # fmt: skip
        assert needle in text, needle


def test_missing_cell_rendered_as_dash_and_listed() -> None:
    records = [
        _run(f"r{i}", Outcome(score=0.3, source="evaluated"), agent="a", base_model=m)
        for i, m in enumerate(["ptb-tiny", "Qwen/Qwen3-1.7B-Base"])
    ]
    records.append(_run("r9", Outcome(score=0.9, source="evaluated"), agent="b"))
    board = scoring.leaderboard(records, baselines.published())
    md = to_markdown(board)
    assert "| a | 30.0 |" in md
    assert "| b | — |" in md
    assert "- b: seed 0, arith × Qwen/Qwen3-1.7B-Base" in md
    console = Console(record=True, width=200)
    console.print(to_rich(board))
    assert "b: seed 0, arith × Qwen/Qwen3-1.7B-Base" in console.export_text()


def test_empty_board_renders(tmp_path: Path) -> None:
    board = build_leaderboard(tmp_path)
    assert board.sections == [] and board.unreadable == []
    assert "No scored runs." in to_markdown(board)
    for render in RENDERERS.values():
        assert render(board)
