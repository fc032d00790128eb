"""Renders a Leaderboard as markdown, CSV, JSON or rich renderables for the terminal.

Every renderer shows each section (its weighting and weights), rows whose `average` is None as
"—", a benchmark value that includes a fallback cell marked `*`, and — below the tables, or as
trailing rows in CSV — the missing cells, the fallback cells with their cause and reason, and
the runs left out of the board (unreadable, failed, in progress / interrupted, another suite)
with why. Titles name the board's suite. A row
whose sandbox does not isolate the agent (`host`) says so in its `isolated` column and in a note:
its agent could have read the harness's keys and forged its records. The `unjudged` column counts
a row's runs that no LLM judge read; an official board (`--official`) leaves those runs out and
lists them.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from posttrainbench.records import (
    FALLBACK_SOURCES,
    AgentConfig,
    Leaderboard,
    LeaderboardRow,
    LeaderboardSection,
    LeftOutRun,
)
from posttrainbench.sandbox import isolates

NONE = "—"
FALLBACK_MARK = "*"
UNISOLATED_NOTE = (
    "Unisolated rows (no isolating sandbox: the agent could read the harness's files and keys "
    "and forge its records; not graded under the benchmark's rules):"
)


def isolation(config: AgentConfig) -> str:
    """The `isolated` cell: "yes", "no (SANDBOX)" where the sandbox does not isolate, or
    "unknown (SANDBOX)" for a backend not registered here."""
    known = isolates(config.sandbox)
    return "yes" if known else f"{'unknown' if known is None else 'no'} ({config.sandbox})"


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _average(row: LeaderboardRow) -> str:
    if row.average is None:
        return NONE
    return f"{row.average:.1f} ± {row.std:.1f}" if row.std is not None else f"{row.average:.1f}"


def _bench(row: LeaderboardRow, benchmark: str) -> str:
    score = row.benchmarks.get(benchmark)
    if score is None:
        return NONE
    return f"{score.score:.1f}" + (FALLBACK_MARK if score.fallbacks else "")


def _fallbacks(row: LeaderboardRow) -> str:
    causes = [f"{src.removeprefix('fallback_')} {n}" for src, n in row.fallbacks.items() if n]
    return f"{row.n_fallbacks} ({', '.join(causes)})" if causes else "0"


def _llm(row: LeaderboardRow) -> str:
    if row.llm is None:
        return NONE
    return f"${row.llm.cost_per_run:.2f}"


def _cells(row: LeaderboardRow, section: LeaderboardSection) -> list[str]:
    return [
        row.label,
        _average(row),
        *(_bench(row, b) for b in section.benchmarks),
        str(row.n_runs),
        _fallbacks(row),
        _llm(row),
        isolation(row.config),
        str(row.n_unjudged),
    ]


def _header(section: LeaderboardSection) -> list[str]:
    return [
        "agent",
        "average",
        *section.benchmarks,
        "runs",
        "fallbacks",
        "LLM $/run",
        "isolated",
        "unjudged",
    ]


def _title(board: Leaderboard, section: LeaderboardSection) -> str:
    suite = f"suite {board.suite}, " if board.suite else ""
    return f"Leaderboard, {suite}{section.weighting} weighting (percent)"


def _weights_line(section: LeaderboardSection) -> str:
    weights = ", ".join(f"{b} {w:.4f}" for b, w in section.weights.items())
    models = ", ".join(section.base_models)
    return f"Weights ({section.weighting}): {weights}. Base models: {models}."


def _section_notes(section: LeaderboardSection) -> list[tuple[str, list[str]]]:
    """(heading, items) for the missing cells and the fallback cells of a section."""
    missing = [
        f"{row.label}: seed {k.seed}, {k.benchmark} × {k.base_model}"
        for row in section.rows
        for k in row.missing
    ]
    fallbacks = [
        f"{row.label}, {c.benchmark}, {c.base_model}, seed {c.seed}: {c.source}"
        + (f" — {_one_line(c.reason)}" if c.reason else "")
        for row in section.rows
        for c in row.fallback_cells
    ]
    reviewed = [
        f"{row.label}, {c.benchmark}, {c.base_model}, seed {c.seed}: {_one_line(c.reviewed)}"
        for row in section.rows
        for c in row.cells
        if c.reviewed
    ]
    unisolated = [
        f"{row.label}: sandbox {row.config.sandbox}"
        for row in section.rows
        if isolates(row.config.sandbox) is False
    ]
    notes = []
    if unisolated:
        notes.append((UNISOLATED_NOTE, unisolated))
    if missing:
        notes.append(("Missing cells (a seed missing any cell gets no average):", missing))
    if fallbacks:
        notes.append(
            (f"Fallback cells ({FALLBACK_MARK}: the base model's score was used):", fallbacks)
        )
    if reviewed:
        notes.append(("Cells whose integrity verdict a person overrode (ptb review):", reviewed))
    return notes


def _left_out(run: LeftOutRun) -> str:
    where = f"{run.label}, {run.benchmark}, {run.base_model}, seed {run.seed}"
    stage = f"{run.stage}: " if run.stage and run.stage not in run.reason else ""
    return f"{run.run_id} ({where}): {stage}{_one_line(run.reason)}"


def _board_notes(board: Leaderboard) -> list[tuple[str, list[str]]]:
    """(heading, items) for every run left out of the board."""
    notes = [
        (
            "Unreadable runs (not counted):",
            [_one_line(u.reason) for u in board.unreadable],  # the reason names the file
        ),
        ("Failed runs (no outcome, not counted):", [_left_out(r) for r in board.failed]),
        ("In progress / interrupted (not counted):", [_left_out(r) for r in board.in_progress]),
        (
            f"Other suite (not counted on the {board.suite} board):",
            [_left_out(r) for r in board.other_suite],
        ),
        (
            f"Unjudged (no LLM judge; left out of this official board): {len(board.unjudged)}",
            [_left_out(r) for r in board.unjudged],
        ),
        ("Baselines (fallbacks and weights):", [board.baselines] if board.baselines else []),
    ]
    return [(head, items) for head, items in notes if items]


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_notes(notes: list[tuple[str, list[str]]]) -> list[str]:
    lines = []
    for head, items in notes:
        lines += ["", head, *(f"- {_md_cell(item)}" for item in items)]
    return lines


def to_markdown(board: Leaderboard) -> str:
    lines: list[str] = []
    for section in board.sections:
        head = _header(section)
        lines += [f"## {_title(board, section)}", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in section.rows:
            lines.append("| " + " | ".join(_md_cell(c) for c in _cells(row, section)) + " |")
        lines += ["", _weights_line(section)]
        lines += _md_notes(_section_notes(section))
        lines.append("")
    if not board.sections:
        lines += [f"No scored runs.{f' Suite: {board.suite}.' if board.suite else ''}", ""]
    lines += _md_notes(_board_notes(board))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n") + "\n"


def to_csv(board: Leaderboard) -> str:
    """One line per row of each section (`section` is its weighting, `suite` the board's), then
    one line per run left out (`section` unreadable, failed, in_progress, other_suite or
    unjudged; `note` says why)."""
    benches = sorted({b for s in board.sections for b in s.benchmarks})
    buf = io.StringIO()
    w = csv.writer(buf)
    counts = ["complete_seeds", "n_seeds", "n_runs", *FALLBACK_SOURCES, "missing_cells"]
    llm = ["llm_calls", "input_tokens", "cached_tokens", "output_tokens", "llm_cost_usd"]
    head = ["suite", "section", "agent", "average", "std", *counts, *benches, *llm, "sandbox",
            "isolated", "unjudged"]  # fmt: skip
    w.writerow([*head, "note"])
    for s in board.sections:
        for r in s.rows:
            avg = "" if r.average is None else f"{r.average:.4f}"
            std = "" if r.std is None else f"{r.std:.4f}"
            n = [len(r.complete_seeds), len(r.seeds), r.n_runs, *r.fallbacks.values()]
            scores = [f"{r.benchmarks[b].score:.4f}" if b in r.benchmarks else "" for b in benches]
            t = r.llm
            used = (
                [t.calls, t.input_tokens, t.cached_tokens, t.output_tokens, f"{t.cost_usd:f}"]
                if t is not None
                else [""] * len(llm)
            )
            isolated = isolation(r.config).split(" ")[0]
            row = [board.suite, s.weighting, r.label, avg, std, *n, len(r.missing), *scores, *used]
            w.writerow([*row, r.config.sandbox, isolated, r.n_unjudged, ""])
    blank = [""] * (len(head) - 3)
    for u in board.unreadable:
        w.writerow([board.suite, "unreadable", u.path, *blank, _one_line(u.reason)])
    left_out = (
        ("failed", board.failed),
        ("in_progress", board.in_progress),
        ("other_suite", board.other_suite),
        ("unjudged", board.unjudged),
    )
    for kind, runs in left_out:
        for run in runs:
            w.writerow([run.suite or board.suite, kind, run.label, *blank, _left_out(run)])
    return buf.getvalue()


def to_json(board: Leaderboard) -> str:
    return json.dumps(board.model_dump(mode="json"), indent=2) + "\n"


def _rich_notes(notes: list[tuple[str, list[str]]]) -> Text:
    text = Text()
    for i, (head, items) in enumerate(notes):
        text.append(("\n" if i else "") + head + "\n", style="bold")
        for item in items:
            text.append(f"  - {item}\n")
    return text


def to_rich(board: Leaderboard) -> RenderableType:
    """A table per section, its missing and fallback cells, then the runs left out (footer)."""
    parts: list[RenderableType] = []
    for section in board.sections:
        table = Table(title=_title(board, section), caption=Text(_weights_line(section)))
        for col in _header(section):
            table.add_column(col, justify="left" if col == "agent" else "right")
        for row in section.rows:
            table.add_row(*(Text(c) for c in _cells(row, section)))
        parts.append(table)
        if notes := _section_notes(section):
            parts.append(_rich_notes(notes))
    if not board.sections:
        parts.append(Text(f"No scored runs.{f' Suite: {board.suite}.' if board.suite else ''}"))
    if notes := _board_notes(board):
        parts.append(_rich_notes(notes))
    return Group(*parts)


RENDERERS: dict[str, Callable[[Leaderboard], str]] = {
    "md": to_markdown,
    "csv": to_csv,
    "json": to_json,
}
