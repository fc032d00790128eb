"""Time `ptb report` over 10,000 synthetic runs (target: under 2 s end to end).

python benchmarks/report_speed.py [--runs 10000] [--dir /tmp/ptb-report-speed] [--profile]

Writes (or reuses, if --dir already holds them) run.json files of finished runs over the 7
official benchmarks × 4 official base models × agents × seeds, so the paper weighting applies;
a few are fallbacks, overridden, failed or in progress. Then times `python -m posttrainbench
report DIR --format md` as a subprocess, and scan, score and render in-process.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from posttrainbench.config import load_settings
from posttrainbench.errors import ResultsDirError
from posttrainbench.records import (
    AgentAttempt,
    AgentOutcome,
    ApiUsage,
    BaselineRef,
    CollectedFile,
    CollectOutcome,
    ErrorInfo,
    EvalMetrics,
    Outcome,
    RunRecord,
    RunSpec,
    StageStatus,
    Verdict,
)
from posttrainbench.report.tables import RENDERERS
from posttrainbench.results import baselines, scoring
from posttrainbench.results.store import save_run, scan_all
from posttrainbench.runner import harness_info

BENCHMARKS = ["aime2025", "arenahardwriting", "bfcl", "gpqamain", "gsm8k", "healthbench",
              "humaneval"]  # fmt: skip
MODELS = ["Qwen/Qwen3-1.7B-Base", "Qwen/Qwen3-4B-Base", "HuggingFaceTB/SmolLM3-3B-Base",
          "google/gemma-3-4b-pt"]  # fmt: skip
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _record(i: int, agent: int, seed: int, bench: str, model: str, rng: random.Random) -> RunRecord:
    run_id = f"r{i:05d}-a{agent}-{model.rsplit('/', 1)[-1]}-{bench}-s{seed}"
    spec = RunSpec(
        run_id=run_id, sweep="speed", agent="claude_code", agent_model=f"model-{agent % 12}",
        agent_effort=["low", "high", None][agent % 3], base_model=model, benchmark=bench,
        budget_s=36000, sandbox="docker", seed=seed, api_provider="anthropic", created_at=T0,
    )  # fmt: skip
    record = RunRecord(spec=spec, harness=harness_info())
    for s in record.stages:
        record.stages[s] = StageStatus(state="done", started_at=T0, ended_at=T0, duration_s=1.0)
    base = rng.uniform(0.0, 0.3)
    record.baseline = BaselineRef(score=base, source="published")
    record.agent = AgentOutcome(
        started_at=T0, deadline=T0 + timedelta(hours=10), budget_s=36000,
        attempts=[AgentAttempt(started_at=T0, pid=1000 + i, exit_code=0, exit_reason="finished")],
        exit_reason="finished", wall_s=3000.0,
        api_usage=ApiUsage(provider="anthropic", calls=300, input_tokens=9_000_000,
                           output_tokens=200_000, cost_usd=Decimal("12.34")),
    )  # fmt: skip
    record.collect = CollectOutcome(
        status="collected",
        files=[CollectedFile(path=f, bytes=1000, sha256="0" * 64)
               for f in ("config.json", "model.safetensors", "tokenizer.json")],
    )  # fmt: skip
    record.verdict = Verdict(decision="clean", checks=["weights", "contamination", "judge"])
    score = min(1.0, max(0.0, base + rng.gauss(0.15 + 0.005 * agent, 0.05)))
    roll = rng.random()
    if roll < 0.03:
        record.stages["evaluate"] = StageStatus(
            state="failed", error=ErrorInfo(type="EvaluationError", message="CUDA OOM")
        )
        record.stages["score"] = StageStatus()
        return record
    if roll < 0.05:
        record.stages["score"] = StageStatus(state="running")
        return record
    record.metrics = EvalMetrics(
        benchmark=bench, split="test", score=score, n_samples=500, model_path="final_model",
        log_file=f"file://eval/{run_id}.eval",
    )  # fmt: skip
    if roll < 0.08:
        record.outcome = Outcome(score=base, source="fallback_flagged", base_score=base,
                                 reason="contaminated")  # fmt: skip
    elif roll < 0.09:
        record.outcome = Outcome(score=score, source="evaluated", reviewed="clean by ana: ok")
    else:
        record.outcome = Outcome(score=score, source="evaluated", base_score=base)
    return record


def generate(root: Path, runs: int) -> None:
    rng = random.Random(0)
    grid = list(itertools.product(BENCHMARKS, MODELS))
    n_seeds = 10
    agents = -(-runs // (len(grid) * n_seeds))
    cells = itertools.product(range(agents), range(n_seeds), grid)
    for i, (agent, seed, (bench, model)) in enumerate(itertools.islice(cells, runs)):
        record = _record(i, agent, seed, bench, model, rng)
        save_run(root / "speed" / record.spec.run_id, record)


def in_process(root: Path) -> tuple[float, float, float, str]:
    t0 = time.perf_counter()
    loaded = scan_all(root)
    t1 = time.perf_counter()
    records = [r for _, r in loaded if not isinstance(r, ResultsDirError)]
    table, measured = baselines.table(load_settings().baselines_dir)
    board = scoring.leaderboard(records, table)
    board.baselines = "published PostTrainBench table" + (
        f"; measured here: {', '.join(measured)}" if measured else ""
    )  # as build_leaderboard does
    t2 = time.perf_counter()
    text = RENDERERS["md"](board)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None, help="Results dir (kept; reused).")
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process report.")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="ptb-report-speed-"))
    have = sum(1 for _ in root.glob("*/*/run.json")) if root.is_dir() else 0
    if have != args.runs:
        t = time.perf_counter()
        generate(root, args.runs)
        print(f"wrote {args.runs:,} runs under {root} in {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "posttrainbench", "report", str(root), "--format", "md"],
        capture_output=True,
        text=True,
        check=True,
    )
    total = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import posttrainbench.cli"], check=True)
    startup = time.perf_counter() - t
    scan, score, render, text = in_process(root)
    assert text == proc.stdout, "in-process and CLI reports differ"
    print(
        f"ptb report over {args.runs:,} runs: {total:.2f} s (start-up {startup:.2f} s,"
        f" scan {scan:.2f} s, score {score:.2f} s, render {render:.2f} s)"
        f" — {'within' if total < 2 else 'over'} the 2 s target"
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(in_process, root)
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
