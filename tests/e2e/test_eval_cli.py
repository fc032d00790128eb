"""`ptb eval`, `ptb baseline` and `ptb data prefetch` through the real CLI."""

import json
import shutil
from pathlib import Path

from posttrainbench.records import EvalMetrics
from tests.conftest import PtbRunner
from tests.fixtures.hub import hub_root
from tests.fixtures.math_data import write_gsm8k


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
    stored = cache_dir / "baselines" / "ptb-v1.2" / "ptb-tiny__arith.json"  # the default suite
    m = EvalMetrics.model_validate_json(stored.read_text())
    assert m.split == "test" and m.n_samples == 300 and m.params["limit"] is None
    assert m.suite == "ptb-v1.2"
    assert f"ptb-tiny on arith: accuracy {m.score:.4f}" in r.stdout
    (tmp_path / "results").mkdir()
    board = json.loads(ptb("report", str(tmp_path / "results"), "--format", "json").stdout)
    assert "measured here: ptb-tiny/arith" in board["baselines"]


def test_eval_follows_the_suite_named(ptb: PtbRunner, tiny_model_dir: Path, tmp_path: Path) -> None:
    """A sampling model on GSM8K: one seed under ptb-v1.0, five under the default ptb-v1.2,
    the suite in metrics.json; an unknown suite or a benchmark outside it is refused first."""
    sampler = tmp_path / "sampler"
    shutil.copytree(tiny_model_dir, sampler)
    gen = json.loads((sampler / "generation_config.json").read_text())
    (sampler / "generation_config.json").write_text(json.dumps(gen | {"temperature": 0.7}))
    write_gsm8k(tmp_path / "hf")
    hub = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_CACHE": str(hub_root(tmp_path / "hf"))}
    args = ["eval", str(sampler), "--benchmark", "gsm8k", "--template-family", "ptb-tiny",
            "--limit", "1", "--max-tokens", "4"]  # fmt: skip
    for suite, n in (("ptb-v1.0", 1), (None, 5)):
        out = tmp_path / f"eval-{suite}"
        r = ptb(*args, "--out", str(out), *(["--suite", suite] if suite else []), env=hub)
        assert r.returncode == 0, r.stderr
        m = EvalMetrics.model_validate_json((out / "metrics.json").read_text())
        assert m.suite == (suite or "ptb-v1.2") and len(m.seeds) == n
        assert f"suite {m.suite} →" in r.stdout

    r = ptb(*args, "--out", str(tmp_path / "x"), "--suite", "ptb-v1.3", env=hub)
    assert r.returncode == 2 and "unknown suite 'ptb-v1.3'" in r.stderr
    assert "known: ptb-v1.0, ptb-v1.2" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = ptb("eval", str(sampler), "--benchmark", "bfcl", "--template-family", "ptb-tiny",
            "--out", str(tmp_path / "y"))  # fmt: skip
    assert r.returncode == 2 and "benchmark bfcl is not in suite ptb-v1.2" in r.stderr
    assert "pass --suite ptb-v1.0" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = ptb("baseline", "--models", "ptb-tiny", "--benchmarks", "bfcl", "--suite", "ptb-v1.2")
    assert r.returncode == 2 and "benchmark bfcl is not in suite ptb-v1.2" in r.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_prefetch_offline_says_no_network_once(ptb: PtbRunner, tmp_path: Path) -> None:
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    r = ptb("data", "prefetch", "--benchmarks", "gsm8k", "--models", "Qwen/Qwen3-1.7B-Base",
            "--no-instruct", env=offline)  # fmt: skip
    assert r.returncode == 1 and "FAILED" not in r.stdout  # said at once, not per item
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: no network: ") and "HF_HUB_OFFLINE is set" in line
