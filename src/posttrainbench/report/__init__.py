"""Reports over run records: leaderboard tables (md, csv, json, terminal)."""

from __future__ import annotations

from pathlib import Path

from posttrainbench.records import Leaderboard
from posttrainbench.results import baselines, scoring
from posttrainbench.results.store import scan_runs


def build_leaderboard(results: Path) -> Leaderboard:
    return scoring.leaderboard((rec for _, rec in scan_runs(results)), baselines.published())
