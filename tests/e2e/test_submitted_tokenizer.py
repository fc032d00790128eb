"""The grader tokenises with the base model's tokenizer: a submitted tokenizer whose normalizer
rewrites the text the model reads changes no score, and is recorded as evidence naming what
differs. Through the real CLI and runner, on the embedded default (ptb-tiny × arith)."""

from __future__ import annotations

import sys
from pathlib import Path

from posttrainbench.records import CheckResult, RunRecord
from tests.conftest import PtbRunner

AGENT = Path(__file__).with_name("redteam_agent.py")


def test_a_rewriting_normalizer_changes_no_score_and_is_evidence(
    ptb: PtbRunner, tmp_path: Path, tiny_model_dir: Path
) -> None:
    kit = tmp_path / "kit.json"
    kit.write_text("{}")
    cmd = f"{sys.executable} {AGENT} tokenizer_normalizer {kit}"
    results = tmp_path / "r"
    done = ptb("run", "--agent", "command", "--agent-cmd", cmd, "--base-model", "ptb-tiny",
               "--benchmark", "arith", "--budget", "2m", "--results", str(results))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run_json,) = [p for p in results.rglob("run.json") if "workspace" not in p.parts]
    run_dir = run_json.parent
    record = RunRecord.model_validate_json(run_json.read_text())
    assert record.collect and record.collect.status == "collected", record.collect
    assert record.metrics is not None, record.eval_error
    assert record.baseline is not None
    # The base's weights read through the base's tokenizer: the base's score, to the item.
    assert record.metrics.score == record.baseline.score
    assert record.metrics.params["tokenizer"] == str(tiny_model_dir)

    check = CheckResult.model_validate_json((run_dir / "integrity/model_files.json").read_text())
    assert check.status == "passed", check  # context: it changed nothing the grader measured
    (note,) = [e for e in check.evidence if e.path == "final_model/tokenizer.json"]
    assert not note.decisive and "normalizer" in note.summary, note
    assert "Replace" in (note.excerpt or "")

    # The normalizer is no no-op: the submitted tokenizer rewrites the question the model reads,
    # the base's (which the grader uses) does not.
    from transformers import AutoTokenizer

    question = "What is 12 + 34?"
    own = AutoTokenizer.from_pretrained(run_dir / "final_model")
    base = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert own.decode(own(question)["input_ids"]) == "What is 77 + 77?"
    assert base.decode(base(question)["input_ids"]) == question
