"""Where the demo's gain came from, in one line, from what its two runs recorded: both scores on
the held-out test split, the base model's score, and the recipe's own log of its training
(`recipe_history.json`, written by embedded.recipe_train in its workspace)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from posttrainbench.records import Outcome, RunRecord
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.store import scan_runs

HISTORY = "recipe_history.json"


def _history(run_dir: Path) -> dict[str, Any]:
    """The recipe's training log; {} where it left none or an unreadable one."""
    try:
        data = json.loads((RunPaths(run_dir).workspace / HISTORY).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _pct(score: float | None) -> str:
    return "—" if score is None else f"{100 * score:.1f}"


def _training(run_dir: Path, benchmark: str) -> str:
    history = _history(run_dir)
    steps, rows = history.get("steps"), history.get("train_rows")
    if not isinstance(steps, int):
        return "recipe left no training log"
    saves = history.get("saves")
    saves = saves if isinstance(saves, list) else []
    found = [s.get("dev_accuracy") for s in saves if isinstance(s, dict)]
    devs = [float(d) for d in found if isinstance(d, int | float) and d >= 0]
    dev = f", dev accuracy at its last check {100 * devs[-1]:.1f}" if devs else ""
    items = f" ({rows:,} items)" if isinstance(rows, int) else ""
    return (
        f"recipe trained {steps} steps on the {benchmark} training split{items} and published "
        f"{len(saves)} model(s){dev}"
    )


def gain_line(sweep_dir: Path) -> str | None:
    """`recipe 84.0 vs noop 0.0 — …`; None unless both runs have a score."""
    runs: dict[str, tuple[Path, RunRecord, Outcome]] = {}
    for run_dir, record in scan_runs(sweep_dir):
        if isinstance(record, RunRecord) and record.outcome is not None:
            runs[record.spec.agent] = (run_dir, record, record.outcome)
    if "recipe" not in runs or "noop" not in runs:
        return None
    recipe_dir, recipe, out = runs["recipe"]
    head = f"recipe {_pct(out.score)} vs noop {_pct(runs['noop'][2].score)}"
    test = f"held-out {recipe.spec.benchmark} test accuracy"
    if out.source != "evaluated":
        why = f": {out.reason}" if out.reason else ""
        return f"{head} — recipe's score is the base model's ({out.source}{why})"
    return (
        f"{head} — {_training(recipe_dir, recipe.spec.benchmark)}; {test} "
        f"{_pct(out.base_score)} (base model) → {_pct(out.score)} (recipe's final_model)"
    )
