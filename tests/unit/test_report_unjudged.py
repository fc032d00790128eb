"""A run no LLM judge read is marked unjudged on every report row (tables, CSV, JSON, site), and
`ptb report --official` leaves it out and says how many were left out (through the real CLI)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from posttrainbench.records import Outcome, RunRecord, RunSpec, Verdict
from posttrainbench.report import build_leaderboard, site
from posttrainbench.results.store import save_run
from posttrainbench.runner import harness_info
from tests.conftest import PtbRunner

CHECKS = ["tamper", "decontamination", "judge"]
VERDICTS = {
    "judged": Verdict(decision="clean", checks=CHECKS),
    "judge_skipped": Verdict(decision="clean", checks=CHECKS, skipped=["judge"]),
    "no_judge_check": Verdict(decision="clean", checks=CHECKS[:2]),
    "no_verdict": None,
}


def _results(root: Path) -> Path:
    for seed, (name, verdict) in enumerate(VERDICTS.items()):
        spec = RunSpec(
            run_id=name,
            agent="command",
            agent_cmd="python a.py",
            base_model="ptb-tiny",
            benchmark="arith",
            budget_s=60,
            seed=seed,
        )
        record = RunRecord(spec=spec, harness=harness_info(), verdict=verdict)
        record.outcome = Outcome(score=0.5, source="evaluated")
        save_run(root / "sweep" / name, record)
    return root


def test_unjudged_runs_are_marked_on_every_row(tmp_path: Path) -> None:
    board = build_leaderboard(_results(tmp_path))
    (row,) = board.sections[0].rows
    marks = {c.run_id: c.unjudged for c in row.cells}
    assert marks == {
        "judged": False,
        "judge_skipped": True,
        "no_judge_check": True,
        "no_verdict": True,
    }
    assert row.n_unjudged == 3 and not board.unjudged and not board.official
    html = site._section_table(0, board.sections[0]) + site._runs_table(board, {})
    assert "class='unjudged'" in html and html.count("· unjudged") == 3


def test_report_marks_and_official_leaves_out_unjudged_runs(tmp_path: Path, ptb: PtbRunner) -> None:
    results = _results(tmp_path)
    plain = ptb("report", str(results))
    assert plain.returncode == 0, plain.stderr
    head, row = [line for line in plain.stdout.splitlines() if line.startswith("| ")][:2]
    assert head.rstrip(" |").endswith("unjudged") and row.rstrip(" |").endswith("| 3")
    rows = list(csv.DictReader(io.StringIO(ptb("report", str(results), "-f", "csv").stdout)))
    assert rows[0]["unjudged"] == "3"

    official = ptb("report", str(results), "--official")
    assert official.returncode == 0, official.stderr
    assert "3 run(s) left out, no LLM judge read them" in official.stderr
    assert "Unjudged (no LLM judge; left out of this official board): 3" in official.stdout
    for name in ("judge_skipped", "no_judge_check", "no_verdict"):
        assert f"- {name} (" in official.stdout, name
    line = next(x for x in official.stdout.splitlines() if x.startswith("| command"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[-1] == "0" and "1" in cells  # one run counted, none unjudged
    rows = list(
        csv.DictReader(io.StringIO(ptb("report", str(results), "--official", "-f", "csv").stdout))
    )
    assert sorted(r["agent"] for r in rows if r["section"] == "unjudged") == ["command"] * 3
