"""Print per-stage wall times and outcomes of every run under a results directory.

python benchmarks/stage_times.py results/demo-20261123T120000
"""

from __future__ import annotations

import sys
from pathlib import Path

from posttrainbench.records import STAGES
from posttrainbench.results.store import scan_runs


def main(root: Path) -> None:
    print("agent      " + " ".join(f"{s:>9}" for s in STAGES) + "     total  score  source")
    for path, rec in scan_runs(root):
        if isinstance(rec, Exception):
            print(f"unreadable {path}: {rec}")
            continue
        times = [rec.stages[s].duration_s or 0.0 for s in STAGES]
        score = f"{100 * rec.outcome.score:5.1f}" if rec.outcome else "    —"
        source = rec.outcome.source if rec.outcome else "incomplete"
        cells = " ".join(f"{t:9.1f}" for t in times)
        print(f"{rec.spec.agent:10} {cells} {sum(times):9.1f}  {score}  {source}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
