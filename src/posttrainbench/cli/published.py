"""`ptb import reference` (the reference harness's published tables into a results dir),
`ptb bundle` (a run as one verifiable file) and `ptb verify` (re-check and re-score a bundle).

The command functions are registered in cli/root.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from posttrainbench.config import load_settings

console = Console(stderr=True, highlight=False)


def import_reference_cmd(
    folder: Annotated[
        Path,
        typer.Argument(
            metavar="DIR",
            help="The website's data/ folder (v1.0) or its data/v1.2/ (aggregated_*/final_* "
            "tables).",
        ),
    ],
    name: Annotated[
        str, typer.Option("--name", help="Stored as <results>/imported/<name>/published.json.")
    ] = "reference",
    results: Annotated[
        Path | None,
        typer.Option("--results", help="Results root (default: $PTB_RESULTS or ./results)."),
    ] = None,
    repo: Annotated[
        str | None, typer.Option("--repo", help="owner/name the tables come from.")
    ] = None,
    commit: Annotated[str | None, typer.Option("--commit", help="Their commit.")] = None,
) -> None:
    """Import published result tables; `ptb report --with-published` shows them as rows."""
    from posttrainbench.results.published import import_reference, save_imported

    board = import_reference(folder, repo=repo, commit=commit)
    root = results or load_settings().results_dir
    path = save_imported(root, name, board)
    src = board.source
    origin = f"{src.repo or '?'}@{(src.commit or '?')[:12]} {src.folder}"
    suite = f"suite {board.suite}" if board.suite else "no suite (other benchmarks)"
    console.print(
        f"imported {len(board.agents)} agents ({suite}) from {escape(origin)} → {escape(str(path))}"
    )
    for a in board.agents:
        ours = f"{100 * a.average:6.2f}" if a.average is not None else "     –"
        site = f"  (site {100 * a.site_average:.2f})" if a.site_average is not None else ""
        console.print(f"  {ours}  {escape(a.name)}{site}")


def bundle_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="A finished run directory.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Folder for run.tar.zst (default: the current one)."),
    ] = None,
) -> None:
    """Pack a run's records and final_model into run.tar.zst, with checksums."""
    from posttrainbench.results.bundle import BUNDLE_NAME, make_bundle

    out = output or Path.cwd()
    manifest = make_bundle(run_dir, out)
    score = f"{100 * manifest.score:.2f}" if manifest.score is not None else "none"
    console.print(
        f"bundled {escape(manifest.run_id)}: {len(manifest.files)} files, score {score}"
        f" → {escape(str(out / BUNDLE_NAME))}"
    )


def verify_cmd(
    bundle: Annotated[
        Path, typer.Argument(metavar="BUNDLE", help="A run.tar.zst from ptb bundle.")
    ],
    work_dir: Annotated[
        Path | None,
        typer.Option("--work-dir", help="Where to extract (default: a temporary folder)."),
    ] = None,
    judge_model: Annotated[
        str | None,
        typer.Option(metavar="MODEL", help="Your judge of judged benchmarks (default: the run's)."),
    ] = None,
    judge_base_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL", help="Your judge's endpoint; the bundle's is never called with your key."
        ),
    ] = None,
) -> None:
    """Check a bundle's checksums and integrity, refuse non-canonical evaluation options, and
    re-evaluate its final_model with the pristine grader on the canonical ones."""
    from posttrainbench.results.bundle import JudgeChoice, verify_bundle

    judge = JudgeChoice(model=judge_model, base_url=judge_base_url)
    report = verify_bundle(bundle, work_dir, judge=judge)
    console.print(f"checksums: {'ok' if report.checksums_ok else 'FAILED'}")
    for problem in report.problems[:10]:
        console.print(f"  {escape(problem)}")
    if report.bundled_score is not None:
        again = report.reevaluated_score
        console.print(
            f"score: bundled {100 * report.bundled_score:.4f}, re-evaluated "
            + (f"{100 * again:.4f}" if again is not None else "–")
        )
    reason = f" — {escape(report.problems[0])}" if report.verdict != "verified" else ""
    console.print(f"verdict: [bold]{report.verdict}[/]{reason}")
    if report.verdict != "verified":
        raise typer.Exit(1)
