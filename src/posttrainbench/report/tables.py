"""Renders a Leaderboard as markdown, CSV, JSON or a rich table for the terminal."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

from rich.table import Table

from posttrainbench.records import Leaderboard


def _avg(row_avg: float, std: float | None) -> str:
    return f"{row_avg:.1f} ± {std:.1f}" if std is not None else f"{row_avg:.1f}"


def _benchmarks(board: Leaderboard) -> list[str]:
    return sorted({b for row in board.rows for b in row.benchmarks})


def to_markdown(board: Leaderboard) -> str:
    benches = _benchmarks(board)
    head = ["agent", "average", *benches, "runs", "fallbacks"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in board.rows:
        cells = [r.agent, _avg(r.average, r.std)]
        cells += [f"{r.benchmarks[b]:.1f}" if b in r.benchmarks else "—" for b in benches]
        cells += [str(r.n_runs), str(r.fallbacks)]
        lines.append("| " + " | ".join(cells) + " |")
    weights = ", ".join(f"{b} {w:.4f}" for b, w in board.weights.items())
    lines.append(f"\nScores in percent. Weights ({board.weighting}): {weights}.")
    if board.incomplete:
        lines.append(f"Left out, no outcome yet: {', '.join(board.incomplete)}.")
    return "\n".join(lines) + "\n"


def to_csv(board: Leaderboard) -> str:
    benches = _benchmarks(board)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["agent", "average", "std", "n_seeds", "n_runs", "fallbacks", *benches])
    for r in board.rows:
        std = "" if r.std is None else f"{r.std:.4f}"
        scores = [f"{r.benchmarks[b]:.4f}" if b in r.benchmarks else "" for b in benches]
        w.writerow([r.agent, f"{r.average:.4f}", std, r.n_seeds, r.n_runs, r.fallbacks, *scores])
    return buf.getvalue()


def to_json(board: Leaderboard) -> str:
    return json.dumps(board.model_dump(mode="json"), indent=2) + "\n"


def to_rich(board: Leaderboard) -> Table:
    benches = _benchmarks(board)
    caption = f"{len(board.incomplete)} unfinished run(s) left out" if board.incomplete else None
    table = Table(title=f"Leaderboard (percent; {board.weighting} weights)", caption=caption)
    for col in ("agent", "average", *benches, "runs", "fallbacks"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    for r in board.rows:
        table.add_row(
            r.agent, _avg(r.average, r.std),
            *(f"{r.benchmarks[b]:.1f}" if b in r.benchmarks else "—" for b in benches),
            str(r.n_runs), str(r.fallbacks),
        )  # fmt: skip
    return table


RENDERERS: dict[str, Callable[[Leaderboard], str]] = {
    "md": to_markdown,
    "csv": to_csv,
    "json": to_json,
}
