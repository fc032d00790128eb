"""Reports over run records: leaderboard tables (md, csv, json, terminal).

`build_leaderboard` scans a results dir; a run.json that cannot be read is listed in the board
as unreadable, with the one-line reason, instead of breaking the report. The board is one
suite's: the one named, else the one the runs follow (runs of several suites are refused).
"""

from __future__ import annotations

from pathlib import Path

from posttrainbench.errors import ResultsDirError
from posttrainbench.records import Leaderboard, RunRecord, UnreadableRun
from posttrainbench.results import baselines, scoring
from posttrainbench.results.store import scan_all


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def build_leaderboard(
    results: Path, suite: str | None = None, official: bool = False
) -> Leaderboard:
    """The leaderboard over every run below `results`, for `suite` (default: the one its runs
    follow); raises if it is no directory, or its runs mix suites and none is named. `official`
    leaves out the runs no LLM judge read."""
    records: list[RunRecord] = []
    unreadable: list[UnreadableRun] = []
    for path, loaded in scan_all(results):
        if isinstance(loaded, ResultsDirError):
            unreadable.append(UnreadableRun(path=_relative(path, results), reason=loaded.message))
        else:
            records.append(loaded)
    from posttrainbench.config import load_settings

    chosen = scoring.pick_suite(records, suite)
    table, measured = baselines.table(load_settings().baselines_dir, chosen.id)
    board = scoring.leaderboard(records, table, unreadable, chosen, official=official)
    board.baselines = (
        f"published PostTrainBench table; measured here: {', '.join(measured)}"
        if measured
        else "published PostTrainBench table"
    )
    return board
