"""A run whose sandbox does not isolate its agent (`host`) is marked wherever it is shown: the
leaderboard in every format, `ptb show`, the site's index and run pages. An isolated run is not."""

import csv
import io
import os
from pathlib import Path

import pytest
from rich.console import Console

from posttrainbench import sandbox
from posttrainbench.errors import MissingDependencyError
from posttrainbench.records import AgentConfig, Outcome, RunRecord, RunSpec, StageStatus
from posttrainbench.report import build_leaderboard
from posttrainbench.report.run_page import render_run_page
from posttrainbench.report.run_view import render_run
from posttrainbench.report.site import render_index
from posttrainbench.report.tables import RENDERERS, isolation, to_rich
from posttrainbench.results.store import save_run
from posttrainbench.runner import harness_info
from posttrainbench.sandbox import isolates


def _save(root: Path, run_id: str, sandbox: str, score: float) -> Path:
    spec = RunSpec(run_id=run_id, agent="noop", base_model="ptb-tiny", benchmark="arith",
                   budget_s=60, sandbox=sandbox)  # fmt: skip
    record = RunRecord(spec=spec, harness=harness_info())
    for stage in record.stages:
        record.stages[stage] = StageStatus(state="done")
    record.outcome = Outcome(score=score, source="evaluated")
    save_run(root / "s" / run_id, record)
    return root / "s" / run_id


def test_which_backends_isolate() -> None:
    assert isolates("bwrap") and isolates("podman") and isolates("apptainer")
    assert isolates("host") is False and isolates("published") is None
    published = AgentConfig(agent="x", budget_s=60, sandbox="published")
    assert isolation(published) == "unknown (published)"  # the reference table: not marked


def test_the_board_marks_the_unisolated_row_only(tmp_path: Path) -> None:
    _save(tmp_path, "iso", "bwrap", 0.2)
    _save(tmp_path, "open", "host", 0.9)
    board = build_leaderboard(tmp_path)
    rows = {r.config.sandbox: r.label for r in board.sections[0].rows}

    md = RENDERERS["md"](board)
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| agent"))
    column = [c.strip() for c in header.split("|")].index("isolated")
    table = [line for line in lines if line.startswith("| noop")]
    assert sorted(line.split("|")[column].strip() for line in table) == ["no (host)", "yes"]
    assert "Unisolated rows" in md and f"{rows['host']}: sandbox host" in md
    assert f"{rows['bwrap']}: sandbox bwrap" not in md

    by_sandbox = {r["sandbox"]: r for r in csv.DictReader(io.StringIO(RENDERERS["csv"](board)))}
    assert by_sandbox["host"]["isolated"] == "no" and by_sandbox["bwrap"]["isolated"] == "yes"

    console = Console(record=True, width=250)
    console.print(to_rich(board))
    text = console.export_text()
    assert "no (host)" in text and "Unisolated rows" in text

    index = render_index(tmp_path)
    assert index.count("class='unisolated'") == 2  # the board's row and the run's line


def test_show_and_run_page_mark_a_host_run(tmp_path: Path) -> None:
    for backend, marked in (("host", True), ("bwrap", False)):
        run_dir = _save(tmp_path, f"r-{backend}", backend, 0.5)
        console = Console(record=True, width=250)
        console.print(render_run(RunRecord.model_validate_json((run_dir / "run.json").read_text()),
                                 run_dir))  # fmt: skip
        assert ("UNISOLATED" in console.export_text()) is marked
        page = render_run_page(run_dir)
        assert ("class='unisolated'" in page) is marked
        assert ("NONE: sandbox host" in page) is marked


def test_the_default_never_falls_back_to_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("PTB_SANDBOX", raising=False)
    sandbox._checked.cache_clear()
    try:
        with pytest.raises(MissingDependencyError) as caught:
            sandbox.default_sandbox()
        assert "No permissions to create new namespace" in caught.value.message
        assert "--sandbox host" in (caught.value.hint or "")
        monkeypatch.setenv("PTB_SANDBOX", "host")
        assert sandbox.default_sandbox() == "host"  # chosen knowingly
    finally:
        sandbox._checked.cache_clear()
