"""The targets stay with the harness: a command agent inside bwrap searches everything it can
read for the answers of the test items and finds none, yet `python evaluate.py --limit 2` gets a
test-split score from the harness-side scoring service, and run.json lists that evaluation.

The fixture is GSM8K-shaped with answers nobody can derive from the questions: each test answer
is a unique ten-digit number and each worked solution carries a unique marker. The parquet files
are written uncompressed, so a byte search finds the answers wherever the files are readable
(checked harness-side: the search is not blind)."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

from posttrainbench.records import EvalMetrics, RunRecord
from tests.conftest import PtbRunner
from tests.fixtures.hub import hf_home, write_snapshot
from tests.fixtures.judge import FakeJudge
from tests.fixtures.judged_data import write_arena
from tests.fixtures.math_data import _revision, gsm8k_rows
from tests.fixtures.models import build_family_model

N_TEST = 1319  # the catalog's count: a shorter test split is refused at load
# Split in two here: this file is readable inside the sandbox (the harness's own checkout).
MARKER = "Zorblat-worked-" + "solution"


def _answer(i: int) -> str:
    return str(739182650000 + 7919 * i)  # 12 digits: no installed file holds one


def _test_rows() -> list[dict[str, str]]:
    return [
        {
            "question": f"Zorblat stacks crates in pile number {i}. How many crates are there?",
            "answer": f"{MARKER}-{i}: count them all.\n#### {_answer(i)}",
        }
        for i in range(N_TEST)
    ]


def _parquet(rows: list[dict[str, str]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf, compression="none")
    return buf.getvalue()


NEEDLES = [*(_answer(i) for i in range(N_TEST)), MARKER]
# The agent's command must not hold the needles in clear (it is readable inside): hex, decoded
# into grep's pattern list on stdin. Every top-level folder but the kernel's and the host OS's
# /usr (nothing of the harness's data is there) is searched, the python env and model included.
SEARCH = (
    "for d in /*; do case $d in /proc|/sys|/dev|/usr) continue;; esac; "
    '[ -L "$d" ] && continue; echo "$d" >> searched.txt; '
    "python -c \"print(bytes.fromhex('{hex}').decode())\" | "
    'grep -rlaF -f - "$d" >> found.txt 2>/dev/null; done; '
)
EVALUATE = (
    'python evaluate.py --model-path "$PTB_BASE_MODEL_PATH" --limit 2 --max-tokens 8 '
    "--log-dir own_eval > own_eval.txt 2>&1; "
    'cp -r "$PTB_BASE_MODEL_PATH" final_model'
)


def _search_cmd() -> str:
    return SEARCH.format(hex="\n".join(NEEDLES).encode().hex())


def test_agent_finds_no_target_but_gets_a_harness_score(ptb: PtbRunner, tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    with hf_home(hf):
        build_family_model(hf, "qwen3", ends_turn_at_once=True, sampling={"temperature": 0.0})
        write_snapshot(
            hf,
            "openai/gsm8k",
            {
                "main/test-00000-of-00001.parquet": _parquet(_test_rows()),
                "main/train-00000-of-00001.parquet": _parquet(gsm8k_rows(12, offset=1000)),
            },
            revision=_revision("gsm8k"),
        )
    # Not blind: harness-side, the same search finds every answer in the hub cache.
    seen = subprocess.run(
        ["grep", "-raoF", "-f", "-", str(hf)], input="\n".join(NEEDLES), text=True,
        capture_output=True, check=False,
    )  # fmt: skip
    assert {line.rsplit(":", 1)[-1] for line in seen.stdout.splitlines()} == set(NEEDLES)

    results = tmp_path / "r"
    env = {"HF_HOME": str(hf), "HF_HUB_CACHE": str(hf / "hub")}
    done = ptb(
        "run", "--agent", "command", "--agent-cmd", _search_cmd() + EVALUATE,
        "--base-model", "Qwen/Qwen3-1.7B-Base", "--benchmark", "gsm8k", "--budget", "5m",
        "--sandbox", "bwrap", "--results", str(results), "--suite", "ptb-v1.0", env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run_json = next(p for p in results.rglob("run.json") if "workspace" not in p.parts)
    rec = RunRecord.model_validate_json(run_json.read_text())
    ws = run_json.parent / "workspace"

    searched = (ws / "searched.txt").read_text().split()
    assert {"/workspace", "/tmp", "/home", "/etc"} <= set(searched), searched
    assert (ws / "found.txt").read_text() == "", "a test target is readable inside the sandbox"
    exported = (ws / "eval_data" / "test.jsonl").read_text()
    assert "Zorblat stacks crates in pile number 3" in exported  # the inputs are there
    assert not any(n in exported for n in NEEDLES) and '"target"' not in exported

    own = (ws / "own_eval.txt").read_text()
    assert "gsm8k/test: accuracy" in own and "scored by the harness" in own, own
    assert (ws / "own_eval" / "items.json").is_file()
    own_metrics = EvalMetrics.model_validate_json((ws / "own_eval" / "metrics.json").read_text())
    assert own_metrics.suite == "ptb-v1.0"  # the run's, stated by the harness's service
    assert rec.agent is not None
    (ev,) = rec.agent.evaluations
    assert ev.split == "test" and ev.n_items == 2 and ev.n_answered == 2
    assert ev.metric == "accuracy" and ev.score is not None and ev.error is None
    assert rec.outcome and rec.outcome.source == "evaluated", rec.eval_error
    assert rec.verdict is not None and "tamper" not in rec.verdict.failed
    shown = ptb("show", str(run_json.parent))
    assert "own evaluations" in shown.stdout and "1 (last: test, 2 items" in shown.stdout


# Built in two parts: this file is readable inside the sandbox.
JUDGE_KEY = "sk-judge-" + "J" * 32


def test_judged_evaluate_py_scores_through_the_service_without_a_key(
    ptb: PtbRunner, tmp_path: Path, cache_dir: Path
) -> None:
    """Arena-Hard inside bwrap: the service calls the judge with the harness's key, which the
    sandbox never holds; the first evaluation spends the tiny judge budget, the second is
    refused, and run.json lists both."""
    write_arena(cache_dir)
    hf = tmp_path / "hf"
    with hf_home(hf):
        build_family_model(hf, "qwen3")
    own = (
        'python evaluate.py --model-path "$PTB_BASE_MODEL_PATH" --limit 2 --max-tokens 8 '
        "--log-dir own_eval{n} > own_eval{n}.txt 2>&1; "
    )
    agent = (
        "env > env.txt; "
        f"python -c \"print(bytes.fromhex('{JUDGE_KEY.encode().hex()}').decode())\" | "
        "grep -rlaF -f - /workspace /home /tmp /etc > found.txt; "
        + own.format(n=1)
        + own.format(n=2)
    )
    results = tmp_path / "r"
    env = {"HF_HOME": str(hf), "HF_HUB_CACHE": str(hf / "hub"), "OPENAI_API_KEY": JUDGE_KEY}
    with FakeJudge(lambda _: "Clear. [[A>>B]]") as judge:
        done = ptb(
            "run", "--agent", "command", "--agent-cmd", agent, "--base-model",
            "Qwen/Qwen3-1.7B-Base", "--benchmark", "arenahardwriting", "--budget", "5m",
            "--judge-model", "openai/gpt-5-mini", "--judge-base-url", f"{judge.url}/v1",
            "--agent-judge-budget", "0.000001", "--until", "solve", "--sandbox", "bwrap",
            "--results", str(results), env=env,
        )  # fmt: skip
        calls = judge.calls()
    assert done.returncode == 0, done.stderr[-3000:]
    run_json = next(p for p in results.rglob("run.json") if "workspace" not in p.parts)
    rec = RunRecord.model_validate_json(run_json.read_text())
    ws = run_json.parent / "workspace"

    assert JUDGE_KEY not in (ws / "env.txt").read_text()
    assert "OPENAI_API_KEY" not in (ws / "env.txt").read_text()
    assert (ws / "found.txt").read_text() == ""
    first = (ws / "own_eval1.txt").read_text()
    assert "arenahardwriting/test: score" in first and "scored by the harness" in first, first
    assert calls == 4  # two items, two games each: all from the harness side
    second = (ws / "own_eval2.txt").read_text()
    assert "judge budget spent" in second, second
    assert rec.agent is not None
    one, two = rec.agent.evaluations
    assert one.n_items == 2 and one.metric == "score" and one.error is None
    assert one.judge_cost_usd and one.judge_cost_usd > 0
    assert two.score is None and two.error and "judge budget spent" in two.error
    assert rec.spec.agent_judge_budget_usd == 0.000001
