"""`ptb eval`, `ptb baseline` and `ptb data prefetch` through the real CLI."""

import json
from pathlib import Path

from posttrainbench.records import EvalMetrics
from tests.conftest import PtbRunner


def test_eval_a_model_folder_records_the_ladder(
    ptb: PtbRunner, tiny_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    r = ptb("eval", str(tiny_model_dir), "--benchmark", "arith", "--template-family", "ptb-tiny",
            "--limit", "5", "--out", str(out))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "on arith: accuracy" in r.stdout and "(5 items; max_tokens 6, ladder step 1)" in r.stdout
    m = EvalMetrics.model_validate_json((out / "metrics.json").read_text())
    assert m.ladder_step == 1 and [a.outcome for a in m.attempts] == ["ok"]
    assert m.template_family == "ptb-tiny" and m.n_samples == 5


def test_eval_refuses_unknowns_in_one_line(
    ptb: PtbRunner, tiny_model_dir: Path, tmp_path: Path
) -> None:
    r = ptb("eval", str(tiny_model_dir), "--benchmark", "arith")
    assert r.returncode == 2 and "no template family known" in r.stderr
    assert "--base-model" in r.stderr and "Traceback" not in r.stderr
    hub = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(tmp_path / "hf" / "hub")}
    r = ptb("eval", "Qwen/Qwen3-1.7B", "--benchmark", "gsm8k", env=hub)
    assert r.returncode != 0 and "not in the local Hugging Face cache" in r.stderr
    assert "ptb data prefetch --models Qwen/Qwen3-1.7B" in r.stderr


def test_baseline_measures_and_report_says_so(
    ptb: PtbRunner, tiny_model_dir: Path, tmp_path: Path, cache_dir: Path
) -> None:
    r = ptb("baseline", "--models", "ptb-tiny", "--benchmarks", "arith")
    assert r.returncode == 0, r.stderr
    stored = cache_dir / "baselines" / "ptb-tiny__arith.json"
    m = EvalMetrics.model_validate_json(stored.read_text())
    assert m.split == "test" and m.n_samples == 300 and m.params["limit"] is None
    assert f"ptb-tiny on arith: accuracy {m.score:.4f}" in r.stdout
    (tmp_path / "results").mkdir()
    board = json.loads(ptb("report", str(tmp_path / "results"), "--format", "json").stdout)
    assert "measured here: ptb-tiny/arith" in board["baselines"]


def test_prefetch_offline_reports_each_failure(ptb: PtbRunner, tmp_path: Path) -> None:
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    r = ptb("data", "prefetch", "--benchmarks", "gsm8k", "--models", "Qwen/Qwen3-1.7B-Base",
            "--no-instruct", env=offline)  # fmt: skip
    assert r.returncode == 1
    assert "gsm8k: hf:openai/gsm8k@cc7b047b6e5b: FAILED" in r.stdout
    assert "model: Qwen/Qwen3-1.7B-Base: FAILED" in r.stdout
