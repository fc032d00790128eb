"""Figures of a leaderboard and of single runs, drawn with matplotlib (Agg, no pyplot state).

Each function returns SVG text with no XML prolog, ready to inline into an HTML page; text stays
text (`svg.fonttype: none`) and is never parsed as mathtext, so a `$` in a name is just a `$`.
`save_plots` writes the leaderboard's figures as .svg and .png files.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from posttrainbench.records import Leaderboard, LeaderboardRow, LeaderboardSection, RunRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Intervals = dict[str, tuple[float, float]]
ScatterAxis = Literal["time", "cost"]

_RC: dict[Any, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "ptb",
    "text.parse_math": False,
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_PROLOG = re.compile(r"^.*?(?=<svg)", re.DOTALL)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
_COLOR = "#3b6ea5"
_FALLBACK = "#c0504d"


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def figure_bytes(fig: Figure, fmt: str = "svg") -> bytes:
    """The figure rendered as svg or png."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format=fmt, dpi=110)
    return buf.getvalue()


def _svg(fig: Figure) -> str:
    text = _PROLOG.sub("", figure_bytes(fig).decode("utf-8"), count=1)
    return _METADATA.sub("", text, count=1)


def _draw(build: Callable[[], Figure]) -> Figure:
    """Build a figure under the plots' rc settings: fonts and mathtext are fixed per artist."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        return build()


def _empty(message: str, width: float = 5, height: float = 1.2) -> Figure:
    fig = _figure(width, height)
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", color="#666")
    return fig


def _average_figure(board: Leaderboard, intervals: Intervals | None) -> Figure:
    rows = [(s, r) for s in board.sections for r in s.rows if r.average is not None]
    if not rows:
        return _empty("no agent has a complete seed yet")
    labels = [f"{r.label} ({s.weighting})" if len(board.sections) > 1 else r.label for s, r in rows]
    values = [r.average or 0.0 for _, r in rows]
    lo, hi = [], []
    for (_, r), v in zip(rows, values, strict=True):
        if intervals and r.label in intervals:
            a, b = intervals[r.label]
            lo.append(max(0.0, v - a))
            hi.append(max(0.0, b - v))
        else:
            lo.append(r.std or 0.0)
            hi.append(r.std or 0.0)
    fig = _figure(6.5, 0.9 + 0.35 * len(rows))
    ax = fig.add_subplot()
    y = list(range(len(rows)))
    ax.barh(y, values, xerr=[lo, hi], color=_COLOR, capsize=3, ecolor="#333")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("weighted average score (%)" + (", 95% interval" if intervals else ", ± std"))
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, f" {v:.1f}", va="center", ha="left", fontsize=8)
    ax.set_xlim(0, max(100.0, *(v + h for v, h in zip(values, hi, strict=True))))
    return fig


def average_chart(board: Leaderboard, intervals: Intervals | None = None) -> str:
    """Weighted average per agent configuration, error bars: std over seeds, or `intervals`
    (label → (lo, hi) in percent) where given."""
    return _svg(_draw(lambda: _average_figure(board, intervals)))


def _heatmap_figure(section: LeaderboardSection, row: LeaderboardRow) -> Figure:
    benches, models = section.benchmarks, section.base_models
    if not benches or not models:
        return _empty(f"{row.label}: no cells")
    sums: dict[tuple[int, int], list[float]] = {}
    fallback: set[tuple[int, int]] = set()
    for cell in row.cells:
        if cell.benchmark in benches and cell.base_model in models:
            key = (benches.index(cell.benchmark), models.index(cell.base_model))
            sums.setdefault(key, []).append(cell.score)
            if cell.source != "evaluated":
                fallback.add(key)
    grid = [[math.nan] * len(models) for _ in benches]
    for (i, j), scores in sums.items():
        grid[i][j] = sum(scores) / len(scores)
    fig = _figure(1.8 + 1.1 * len(models), 1.8 + 0.4 * len(benches))
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(models)), [m.rsplit("/", 1)[-1] for m in models], rotation=20)
    ax.set_yticks(range(len(benches)), benches)
    ax.set_title(row.label, fontsize=9)
    for i, j in sums:
        mark = "*" if (i, j) in fallback else ""
        value = grid[i][j]
        ax.text(
            j,
            i,
            f"{value:.1f}{mark}",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if value < 60 else "black",
        )
        if (i, j) in fallback:
            from matplotlib.patches import Rectangle

            ax.add_patch(
                Rectangle(
                    (j - 0.5, i - 0.5),
                    1,
                    1,
                    fill=False,
                    hatch="//",
                    edgecolor=_FALLBACK,
                    linewidth=0,
                )
            )
    fig.colorbar(image, ax=ax, label="score %", shrink=0.8)
    return fig


def heatmap(section: LeaderboardSection, row: LeaderboardRow) -> str:
    """Benchmark × base model grid of one row; a cell holding a fallback is hatched and starred."""
    return _svg(_draw(lambda: _heatmap_figure(section, row)))


def _x_value(record: RunRecord, axis: ScatterAxis) -> float | None:
    if axis == "time":
        solve = record.stages.get("solve")
        if solve is not None and solve.duration_s is not None:
            return solve.duration_s / 60
        return record.agent.wall_s / 60 if record.agent and record.agent.wall_s else None
    usage = record.agent.api_usage if record.agent else None
    return float(usage.cost_usd) if usage is not None else None


def _scatter_figure(records: list[RunRecord], axis: ScatterAxis) -> Figure:
    points: dict[str, list[tuple[float, float, bool]]] = {}
    for rec in records:
        x = _x_value(rec, axis)
        if rec.outcome is None or x is None:
            continue
        label = rec.spec.agent_config.label()
        evaluated = rec.outcome.source == "evaluated"
        points.setdefault(label, []).append((x, 100 * rec.outcome.score, evaluated))
    what = "agent time used (min)" if axis == "time" else "API cost (USD)"
    if not points:
        return _empty(f"no scored run with {what}")
    fig = _figure(5.5, 3.2)
    ax = fig.add_subplot()
    for label, pts in sorted(points.items()):
        ax.scatter(
            [p[0] for p in pts],
            [p[1] for p in pts],
            label=label,
            alpha=0.8,
            marker="o",
            edgecolors=[_FALLBACK if not p[2] else "none" for p in pts],
        )
    ax.set_xlabel(what)
    ax.set_ylabel("score (%)")
    ax.set_ylim(-2, 102)
    ax.legend(fontsize=7, loc="best")
    ax.set_title("score vs " + ("time" if axis == "time" else "cost") + " (red edge: fallback)")
    return fig


def score_scatter(records: Iterable[RunRecord], axis: ScatterAxis = "time") -> str:
    """Each scored run's score against its solve time (minutes) or its API cost (USD)."""
    listed = list(records)
    return _svg(_draw(lambda: _scatter_figure(listed, axis)))


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _read_monitor(path: Path) -> tuple[list[float], dict[str, list[float | None]]]:
    from datetime import datetime

    times: list[float] = []
    columns: dict[str, list[float | None]] = {}
    with path.open(newline="", errors="replace") as f:
        for raw in csv.DictReader(f):
            try:
                t = datetime.fromisoformat(raw.get("time") or "").timestamp()
            except ValueError:
                continue
            times.append(t)
            for key in ("cpu_percent", "gpu_util_percent", "rss_mb", "gpu_mem_mb"):
                columns.setdefault(key, []).append(_float(raw.get(key)))
    start = times[0] if times else 0.0
    return [(t - start) / 60 for t in times], columns


def _monitor_figure(path: Path) -> Figure:
    minutes, columns = _read_monitor(path)
    if not minutes:
        return _empty("monitor.csv has no samples")
    gpu = columns.get("gpu_util_percent", [])
    key, label = (
        ("gpu_util_percent", "GPU utilisation (%)")
        if any(v is not None for v in gpu)
        else ("cpu_percent", "CPU (% of one core)")
    )
    pts = [(m, v) for m, v in zip(minutes, columns.get(key, []), strict=False) if v is not None]
    fig = _figure(6.5, 2.4)
    ax = fig.add_subplot()
    ax.plot(
        [p[0] for p in pts], [p[1] for p in pts], color=_COLOR, marker="." if len(pts) < 30 else ""
    )
    ax.set_xlabel("minutes since the first sample")
    ax.set_ylabel(label)
    ax.set_ylim(bottom=0)
    return fig


def monitor_chart(monitor_csv: Path) -> str | None:
    """GPU utilisation over the run (CPU where no GPU was sampled); None without monitor.csv."""
    try:
        return _svg(_draw(lambda: _monitor_figure(monitor_csv)))
    except OSError:
        return None


def board_figures(board: Leaderboard, records: list[RunRecord]) -> dict[str, Figure]:
    """The leaderboard's figures by file name: average, heatmap-<section>-<row>, score-vs-*
    (over the runs of the board's suite)."""
    records = board_suite_records(board, records)
    figures: dict[str, Figure] = {"average": _draw(lambda: _average_figure(board, None))}
    for s_index, section in enumerate(board.sections):
        for r_index, row in enumerate(section.rows):
            name = f"heatmap-{s_index}-{r_index}"
            figures[name] = _draw(partial(_heatmap_figure, section, row))
    figures["score-vs-time"] = _draw(lambda: _scatter_figure(records, "time"))
    figures["score-vs-cost"] = _draw(lambda: _scatter_figure(records, "cost"))
    return figures


def board_suite_records(board: Leaderboard, records: Iterable[RunRecord]) -> list[RunRecord]:
    """The records of the board's suite (a board never mixes suites)."""
    return [r for r in records if board.suite is None or r.spec.suite == board.suite]


def board_records(results: Path) -> list[RunRecord]:
    """Every readable run record below `results`."""
    from posttrainbench.results.store import scan_all

    return [rec for _, rec in scan_all(results) if isinstance(rec, RunRecord)]


def save_plots(board: Leaderboard, results: Path, out_dir: Path) -> list[Path]:
    """Write the leaderboard's figures to out_dir as <name>.svg and <name>.png; returns them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, fig in board_figures(board, board_records(results)).items():
        for fmt in ("svg", "png"):
            path = out_dir / f"{name}.{fmt}"
            path.write_bytes(figure_bytes(fig, fmt))
            written.append(path)
    return written
