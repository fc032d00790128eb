"""`ptb judge` (re-run the integrity checks of a finished run) and `ptb review` (a signed
human override of its verdict)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from posttrainbench import runner
from posttrainbench.cli.common import JudgeOpt, JudgeUrlOpt
from posttrainbench.config import load_settings
from posttrainbench.errors import ConfigError
from posttrainbench.records import RunRecord
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.store import read_json

console = Console(stderr=True, highlight=False)
RunDirArg = Annotated[
    Path, typer.Argument(metavar="RUN_DIR", help="A run directory (holds run.json).")
]


class ReviewDecision(StrEnum):
    clean = "clean"
    flagged = "flagged"


def _print_checks(run_dir: Path, record: RunRecord) -> None:
    from posttrainbench.records import CheckResult

    verdict = record.verdict
    for name in verdict.checks if verdict else []:
        check = read_json(RunPaths(run_dir).check_file(name), CheckResult)
        first = f": {check.reasons[0]}" if check.reasons else ""
        console.print(f"  {name}: {check.status}{escape(first)}")
    if verdict:
        console.print(f"  verdict: {verdict.decision}")
    if record.outcome:
        o = record.outcome
        console.print(f"  score: {100 * o.score:.1f} ({o.source})")


def judge_cmd(
    run_dir: RunDirArg,
    judge_model: JudgeOpt = None,
    judge_base_url: JudgeUrlOpt = None,
) -> None:
    """Re-run the integrity checks of a collected run (never the agent), then re-score it.

    Checks read the frozen copy taken at collect. The LLM judge runs when a judge model is given
    here or was given to the run.
    """
    record = runner.rejudge(run_dir, load_settings(), judge_model, judge_base_url)
    _print_checks(run_dir, record)


def review_cmd(
    run_dir: RunDirArg,
    decision: Annotated[
        ReviewDecision, typer.Option(help="Your decision over the integrity verdict.")
    ],
    why: Annotated[str, typer.Option(help="The reason, in a sentence: it is kept with it.")],
    who: Annotated[
        str | None, typer.Option(help="Reviewer name (default: $PTB_REVIEWER, else user@host).")
    ] = None,
) -> None:
    """Record a signed human decision beside the verdict and re-score the run with it.

    The verdict files are never edited; reports mark the cell as reviewed.
    """
    record = runner.record_review(run_dir, load_settings(), decision.value, why, who)
    if record.review is None:  # the score stage drops a review that does not verify
        raise ConfigError(
            f"the review of {record.spec.run_id} did not verify with this machine's key",
            "check that the ptb cache dir (and its secrets/review.key) did not change meanwhile",
        )
    console.print(f"  review: {escape(record.review.decision)} by {escape(record.review.who)}")
    _print_checks(run_dir, record)
