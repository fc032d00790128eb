"""The README's main command on the embedded default: real SFT must beat the base model."""

import json
from pathlib import Path

import pytest

from tests.conftest import PtbRunner


@pytest.mark.alone  # trains for a fixed time: a shared CPU means fewer steps
def test_demo_recipe_beats_noop(ptb: PtbRunner, tmp_path: Path) -> None:
    done = ptb("demo", "--results", str(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.startswith("sandbox: host (PTB_SANDBOX=host)\n")  # said before it starts
    assert "recipe" in done.stdout and "noop" in done.stdout
    (sweep,) = list(tmp_path.iterdir())
    report = ptb("report", str(sweep), "--format", "json")
    (section,) = json.loads(report.stdout)["sections"]
    rows = {r["label"]: r for r in section["rows"]}
    assert section["weighting"] == "uniform" and section["weights"] == {"arith": 1.0}
    assert sum(rows["recipe"]["fallbacks"].values()) == sum(rows["noop"]["fallbacks"].values()) == 0
    arith = {name: row["benchmarks"]["arith"]["score"] for name, row in rows.items()}
    gain = arith["recipe"] - arith["noop"]
    print(f"demo: recipe {rows['recipe']['average']:.1f} vs noop {rows['noop']['average']:.1f}")
    assert gain >= 30, rows
