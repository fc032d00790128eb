"""The README's main command on the embedded default: real SFT must beat the base model."""

import json
from pathlib import Path

from tests.conftest import PtbRunner


def test_demo_recipe_beats_noop(ptb: PtbRunner, tmp_path: Path) -> None:
    done = ptb("demo", "--results", str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "recipe" in done.stdout and "noop" in done.stdout
    (sweep,) = list(tmp_path.iterdir())
    report = ptb("report", str(sweep), "--format", "json")
    rows = {r["agent"]: r for r in json.loads(report.stdout)["rows"]}
    assert rows["recipe"]["fallbacks"] == rows["noop"]["fallbacks"] == 0
    gain = rows["recipe"]["benchmarks"]["arith"] - rows["noop"]["benchmarks"]["arith"]
    print(f"demo: recipe {rows['recipe']['average']:.1f} vs noop {rows['noop']['average']:.1f}")
    assert gain >= 30, rows
