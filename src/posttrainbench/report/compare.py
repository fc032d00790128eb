"""`ptb report --compare A B` and `--ci`: paired differences and intervals over a leaderboard.

Per-item scores come from each evaluated run's inspect log (`stats.load_items`), found by run id
below the results dir; fallback cells hold the base model's score and are taken as they are.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from posttrainbench.errors import ConfigError
from posttrainbench.records import CellKey, Leaderboard, LeaderboardRow, LeaderboardSection
from posttrainbench.results.stats import (
    Comparison,
    Interval,
    bootstrap_average,
    fallback_summary,
    load_items,
    paired_difference,
)

MINUS = "−"


def _labels(board: Leaderboard) -> list[str]:
    return sorted({r.label for s in board.sections for r in s.rows})


def match_label(board: Leaderboard, name: str) -> str:
    """The row label `name` means: exact, else the one containing it (case-insensitive)."""
    labels = _labels(board)
    if name in labels:
        return name
    found = [label for label in labels if name.lower() in label.lower()]
    if len(found) == 1:
        return found[0]
    listed = "; ".join(labels) or "(the board has no rows)"
    if found:
        raise ConfigError(
            f"{name!r} matches several agents: {'; '.join(found)}",
            f"give more of the label; agents: {listed}",
        )
    raise ConfigError(f"no agent matches {name!r}", f"agents: {listed}")


def run_dirs(results_dir: Path, run_ids: Iterable[str]) -> dict[str, Path]:
    """run_id → its run directory below `results_dir` (named after the run id, else by run.json)."""
    wanted = set(run_ids)
    found: dict[str, Path] = {}
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(results_dir):
        if "run.json" not in filenames:
            continue
        dirnames.clear()
        path = Path(dirpath)
        if path.name in wanted and path.name not in found:
            found[path.name] = path
        else:
            others.append(path)
    for path in others if len(found) < len(wanted) else []:
        try:
            run_id = json.loads((path / "run.json").read_text())["spec"]["run_id"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if run_id in wanted and run_id not in found:
            found[run_id] = path
    return found


def _items(rows: Iterable[LeaderboardRow], results_dir: Path) -> dict[str, list[float]]:
    """Per-item scores of the evaluated cells of `rows` whose inspect log can be read."""
    ids = [c.run_id for r in rows for c in r.cells if c.source == "evaluated"]
    items: dict[str, list[float]] = {}
    for run_id, path in run_dirs(results_dir, ids).items():
        if (found := load_items(path)) is not None:
            items[run_id] = found
    return items


def _row(section: LeaderboardSection, label: str) -> LeaderboardRow | None:
    return next((r for r in section.rows if r.label == label), None)


def compare_agents(
    board: Leaderboard,
    a: str,
    b: str,
    results_dir: Path,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    use_items: bool = True,
) -> list[Comparison]:
    """`a − b` per section where both agents have cells in common (paired bootstrap).

    `a`, `b`: a row label, or a unique case-insensitive part of one. Raises ConfigError if a
    name matches no label or several, both name one agent, or they share no cell."""
    la, lb = match_label(board, a), match_label(board, b)
    if la == lb:
        raise ConfigError(f"{a!r} and {b!r} both name {la!r}", "compare two different agents")
    pairs = []
    for section in board.sections:
        ra, rb = _row(section, la), _row(section, lb)
        if ra is not None and rb is not None:
            pairs.append((section, ra, rb))
    items = _items([r for _, ra, rb in pairs for r in (ra, rb)], results_dir) if use_items else {}
    out = []
    for section, ra, rb in pairs:
        try:
            out.append(
                paired_difference(
                    ra, rb, section, n_boot=n_boot, seed=seed, level=level, items=items
                )
            )
        except ValueError:
            continue  # no shared cell in this section
    if not out:
        raise ConfigError(
            f"{la!r} and {lb!r} share no cell (seed × benchmark × base model)",
            "run both agents on the same benchmarks, base models and seeds",
        )
    return out


def _signed(x: float) -> str:
    return f"+{x:.1f}" if x >= 0 else f"{MINUS}{abs(x):.1f}"


def _plain(x: float) -> str:
    return f"{x:.1f}" if x >= 0 else f"{MINUS}{abs(x):.1f}"


def _keys(keys: list[CellKey], limit: int = 8) -> str:
    shown = [f"seed {k.seed} {k.benchmark} × {k.base_model}" for k in keys[:limit]]
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return "; ".join(shown) + more


def _verdict(c: Comparison) -> str:
    i = c.interval
    if c.n_seeds == 1 and not i.item_cells:
        return "one shared seed and no per-item scores: cannot tell"
    if c.excludes_zero:
        better = c.a if c.difference > 0 else c.b
        return f"interval excludes 0: {better} is ahead"
    return "interval includes 0: not distinguishable"


def render_comparison(comparisons: list[Comparison]) -> str:
    """Markdown: per section, `A − B = +3.1 [−0.4, +6.5] points over 12 shared cells (3 seeds);
    interval includes 0: not distinguishable`, then what the comparison left out."""
    lines: list[str] = []
    for c in comparisons:
        i = c.interval
        seeds = f"{c.n_seeds} seed" + ("s" if c.n_seeds != 1 else "")
        lines += [
            f"## {c.a} vs {c.b} ({c.weighting} weighting)",
            "",
            f"{c.a} {MINUS} {c.b} = {_signed(c.difference)} [{_signed(i.lo)}, {_signed(i.hi)}]"
            f" points over {len(c.cells)} shared cells ({seeds}); {_verdict(c)}",
            "",
            f"- {round(100 * i.level)}% paired percentile bootstrap, {i.n_boot} draws, seeds"
            f" {', '.join(map(str, i.seeds))} resampled"
            + (f", items resampled within {i.item_cells} runs" if i.item_cells else "")
            + f"; bootstrap p = {c.p_value:.3f}.",
        ]
        if not c.full_grid:
            lines.append(
                "- The shared cells do not cover the section's full grid: weights renormalised"
                " over the benchmarks present, so this is not on the leaderboard's scale."
            )
        if i.note:
            lines.append(f"- Note: {i.note}.")
        if c.only_a:
            lines.append(f"- Only {c.a} ({len(c.only_a)}, not compared): {_keys(c.only_a)}")
        if c.only_b:
            lines.append(f"- Only {c.b} ({len(c.only_b)}, not compared): {_keys(c.only_b)}")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _fallbacks(row: LeaderboardRow) -> str:
    counts = fallback_summary(row)
    return ", ".join(f"{k} {n}" for k, n in counts.items() if n) or "0"


def _ci(interval: Interval | None, row: LeaderboardRow) -> str:
    if interval is None or row.average is None:
        return "—"
    return f"{row.average:.1f} [{_plain(interval.lo)}, {_plain(interval.hi)}]"


def render_intervals(
    board: Leaderboard,
    results_dir: Path,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    use_items: bool = True,
) -> str:
    """Markdown: per section, each row's `average [lo, hi]` (bootstrap over seeds and items)."""
    rows = [r for s in board.sections for r in s.rows]
    items = _items(rows, results_dir) if use_items else {}
    pct = round(100 * level)
    lines: list[str] = []
    for section in board.sections:
        lines += [
            f"## Leaderboard with {pct}% intervals, {section.weighting} weighting (percent)",
            "",
            f"| agent | average [{pct}% CI] | complete seeds | item-level runs | fallbacks |",
            "|---|---|---|---|---|",
        ]
        notes = []
        for row in section.rows:
            interval = None
            if row.complete_seeds:
                interval = bootstrap_average(
                    row, section, n_boot=n_boot, seed=seed, level=level, items=items
                )
                if interval.note:
                    notes.append(f"- {row.label}: {interval.note}.")
            used = str(interval.item_cells) if interval else "—"
            label = row.label.replace("|", "\\|")
            lines.append(
                f"| {label} | {_ci(interval, row)} | {len(row.complete_seeds)} | {used}"
                f" | {_fallbacks(row)} |"
            )
        lines += [
            "",
            f"Percentile bootstrap, {n_boot} draws: complete seeds resampled with replacement,"
            " and items within each evaluated cell whose inspect log was readable.",
            *(["", *notes] if notes else []),
            "",
        ]
    if not board.sections:
        lines.append("No scored runs.")
    return "\n".join(lines).rstrip("\n") + "\n"
