"""A whole run on an official benchmark with fixture data: Qwen3-1.7B-Base (a tiny model of its
architecture in the hub cache) × GSM8K (fixture items in the upstream schema), through the real
CLI and runner. The agent runs the workspace's evaluate.py on the exported test items, then
submits; the harness evaluates final_model on the full test split with the Qwen3 template and the
max-token ladder. An agent that submits nothing takes the published base score."""

import json
from pathlib import Path

from posttrainbench.records import RunRecord
from posttrainbench.results.baselines import published
from tests.conftest import PtbRunner
from tests.fixtures.hub import hf_home
from tests.fixtures.math_data import distinct_train_rows, write_gsm8k
from tests.fixtures.models import build_family_model

AGENT = (
    'python evaluate.py --model-path "$PTB_BASE_MODEL_PATH" --limit 2 --max-tokens 8 '
    "--log-dir dev_eval > dev_eval.txt 2>&1 && "
    'cp -r "$PTB_BASE_MODEL_PATH" final_model'
)


def _run(ptb: PtbRunner, results: Path, cmd: str, env: dict[str, str]) -> RunRecord:
    done = ptb("run", "--agent", "command", "--agent-cmd", cmd, "--base-model",
               "Qwen/Qwen3-1.7B-Base", "--benchmark", "gsm8k", "--budget", "3m",
               "--results", str(results), env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (run_json,) = [p for p in results.rglob("run.json") if "workspace" not in p.parts]
    return RunRecord.model_validate_json(run_json.read_text())


def test_gsm8k_run_end_to_end(ptb: PtbRunner, tmp_path: Path) -> None:
    hf = tmp_path / "hf"
    with hf_home(hf):
        # 1,319 items in seconds; greedy, so ptb-v1.2 evaluates it once
        build_family_model(hf, "qwen3", ends_turn_at_once=True, sampling={"temperature": 0.0})
        write_gsm8k(hf, train=distinct_train_rows(20))
    env = {"HF_HOME": str(hf), "HF_HUB_CACHE": str(hf / "hub")}

    rec = _run(ptb, tmp_path / "r", AGENT, env)
    run_dir = next(
        p.parent for p in (tmp_path / "r").rglob("run.json") if "workspace" not in p.parts
    )
    ws = run_dir / "workspace"
    assert (ws / "eval_data" / "test.jsonl").is_file()
    assert "gsm8k/test: accuracy" in (ws / "dev_eval.txt").read_text()  # the agent's own eval
    dev = json.loads((ws / "dev_eval" / "metrics.json").read_text())
    assert dev["n_samples"] == 2 and dev["template_family"] == "qwen3"
    assert rec.outcome and rec.outcome.source == "evaluated", rec.eval_error
    m = rec.metrics
    assert m and m.n_samples == 1319 and m.template_family == "qwen3" and m.ladder_step == 1
    assert m.max_tokens == 4000 and m.attempts[0].outcome == "ok"
    assert m.sampling and m.sampling.greedy and len(m.seeds) == 1
    assert m.datasets and "@cc7b047b6e5b" in m.datasets[0]
    base = published()["Qwen3-1.7B-Base"]["gsm8k"]
    assert rec.baseline and rec.baseline.source == "published" and rec.baseline.score == base

    nothing = _run(ptb, tmp_path / "n", "echo 'no model today'", env)
    assert nothing.outcome and nothing.outcome.source == "fallback_no_model"
    assert nothing.outcome.score == base
