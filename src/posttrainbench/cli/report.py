"""`ptb report` (the leaderboard of a results folder) and `ptb show` (one run)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from posttrainbench import runner
from posttrainbench.cli.common import ReportFormat, out
from posttrainbench.report import build_leaderboard
from posttrainbench.report.run_view import render_run
from posttrainbench.report.tables import RENDERERS

REPORT_EPILOG = """\
\b
Examples:
  ptb report results/                       # every run below results/, as markdown
  ptb report results/my-sweep --format csv > leaderboard.csv
  ptb report results/ --ci                  # 95% bootstrap intervals over seeds and items
  ptb report results/ --compare claude codex  # paired difference on the cells both ran
  ptb report results/ --with-published      # the published agents next to yours
  ptb report results/ --official            # only runs an LLM judge read
"""

SHOW_EPILOG = """\
\b
Examples:
  ptb show results/adhoc/<run_id>
  ptb show results/adhoc/<run_id> --json | jq .outcome
"""


def report(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="DIRECTORY",
            help="A results folder; every run below it (any depth) is counted.",
        ),
    ],
    format: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="Output format.")
    ] = ReportFormat.md,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--compare",
            metavar="A B",
            help="Paired comparison of two agents (row labels, or unique parts of them) on the "
            "cells both ran: difference with its bootstrap interval.",
        ),
    ] = None,
    ci: Annotated[
        bool,
        typer.Option("--ci", help="Bootstrap 95% intervals of each average (seeds and items)."),
    ] = False,
    with_published: Annotated[
        bool,
        typer.Option(
            "--with-published",
            help="Add the published PostTrainBench agents of the board's suite (imported with "
            "`ptb import reference`, else the copy shipped with ptb) as rows next to yours.",
        ),
    ] = False,
    suite: Annotated[
        str | None,
        typer.Option(
            "--suite",
            metavar="ID",
            help="Build the board for this suite (ptb-v1.2, ptb-v1.0); runs of others are listed "
            "as left out. Default: the one suite the runs follow.",
        ),
    ] = None,
    official: Annotated[
        bool,
        typer.Option(
            "--official",
            help="Leave out the runs no LLM judge read (run without --judge-model); they are "
            "listed, and their number is printed on stderr.",
        ),
    ] = False,
) -> None:
    """Aggregate the runs under DIRECTORY into the weighted leaderboard.

    Benchmarks are weighted as in the paper; a run without a usable model, with a failed
    evaluation or flagged by integrity counts with its base model's score.
    """
    board = build_leaderboard(directory, suite, official=official)
    if official:
        typer.echo(
            f"official board: {len(board.unjudged)} run(s) left out, no LLM judge read them",
            err=True,
        )
    if with_published:
        from posttrainbench.results.published import published_for, with_published_rows

        for published in published_for(board, directory):
            board = with_published_rows(board, published)
    if compare:
        from posttrainbench.report.compare import compare_agents, render_comparison

        text = render_comparison(compare_agents(board, compare[0], compare[1], directory))
    elif ci:
        from posttrainbench.report.compare import render_intervals

        text = render_intervals(board, directory)
    else:
        text = RENDERERS[format.value](board)
    out.print(text, end="" if text.endswith("\n") else "\n", markup=False)


def show(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="A run directory (holds run.json).")
    ],
    json: Annotated[
        bool, typer.Option("--json", help="Print run.json's content instead of tables.")
    ] = False,
) -> None:
    """Show what happened in one run: spec, stages, agent, integrity, score.

    Reads RUN_DIR/run.json only; works on finished, failed and interrupted runs alike.
    """
    record = runner.load(run_dir)
    if json:
        sys.stdout.write(record.model_dump_json(indent=2) + "\n")
        return
    out.print(render_run(record, run_dir.resolve()))
