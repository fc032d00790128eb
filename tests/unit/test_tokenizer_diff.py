"""A submitted tokenizer is compared with the base's by what it does: an honest save agrees, a
normalizer, another vocabulary or added token is named; model_files records it as context."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.config import Settings
from posttrainbench.integrity import frozen
from posttrainbench.integrity.base import CheckContext
from posttrainbench.integrity.model_files import ModelFilesCheck
from posttrainbench.integrity.tokenizer_diff import differences
from posttrainbench.records import CollectOutcome, RunRecord, RunSpec
from posttrainbench.results.layout import RunPaths
from posttrainbench.runner import harness_info

REWRITE = {"type": "Replace", "pattern": {"String": "+"}, "content": "-"}


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def _edit(folder: Path, name: str, change: object) -> None:
    data = json.loads((folder / name).read_text())
    change(data)  # type: ignore[operator]
    (folder / name).write_text(json.dumps(data))


def test_an_honest_save_agrees(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "saved")
    assert differences(tmp_path / "saved", tiny_model_dir) == []


def test_formatting_key_order_and_merge_spelling_do_not_count(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    mine = _copy(tiny_model_dir, tmp_path / "mine")
    data = json.loads((mine / "tokenizer.json").read_text())
    model = data["model"]
    model["merges"] = [m.split(" ") if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    model["vocab"] = dict(reversed(list(model["vocab"].items())))
    data["added_tokens"] = list(reversed(data["added_tokens"]))
    (mine / "tokenizer.json").write_text(json.dumps(dict(reversed(list(data.items()))), indent=4))
    assert differences(mine, tiny_model_dir) == []


def test_what_differs_is_named(tiny_model_dir: Path, tmp_path: Path) -> None:
    mine = _copy(tiny_model_dir, tmp_path / "mine")

    def change(data: dict) -> None:  # type: ignore[type-arg]
        data["normalizer"] = REWRITE
        vocab = data["model"]["vocab"]
        first = next(iter(vocab))
        vocab[first + "x"] = vocab.pop(first)
        data["added_tokens"].append({"id": 5000, "content": "<cheat>", "special": True})

    _edit(mine, "tokenizer.json", change)
    _edit(mine, "tokenizer_config.json", lambda d: d.update(eos_token="<cheat>"))
    (fast, config) = differences(mine, tiny_model_dir)
    assert fast.file == "tokenizer.json"
    assert fast.parts == ("added_tokens", "normalizer", "model.vocab (2 entries)")
    assert config.parts == ("tokenizer_config.json:eos_token",)
    assert "<cheat>" in fast.excerpt  # the first part that differs, as submitted


@pytest.fixture
def context(tmp_path: Path, settings: Settings, tiny_model_dir: Path) -> CheckContext:
    """A run whose collected final_model is the base with a normalizer that rewrites text."""
    paths = RunPaths(tmp_path / "run")
    _copy(tiny_model_dir, paths.workspace / "final_model")
    _edit(paths.workspace / "final_model", "tokenizer.json", lambda d: d.update(normalizer=REWRITE))
    _copy(paths.workspace / "final_model", paths.final_model)
    frozen.freeze(paths.workspace, paths.frozen_workspace)
    spec = RunSpec(
        run_id="r", agent="command", base_model="ptb-tiny", benchmark="arith", budget_s=60
    )
    record = RunRecord(spec=spec, harness=harness_info())
    record.collect = CollectOutcome(status="collected", weights=["model.safetensors"])
    model, bench = MODELS.get("ptb-tiny"), BENCHMARKS.get("arith")
    return CheckContext(paths=paths, record=record, model=model, bench=bench, settings=settings)


def test_model_files_records_a_rewriting_normalizer_as_context(context: CheckContext) -> None:
    check = ModelFilesCheck().run(context)
    assert check.status == "passed"  # the grader tokenises with the base's: no score moves
    (note,) = [e for e in check.evidence if e.path == "final_model/tokenizer.json"]
    assert not note.decisive and "normalizer" in note.summary
    assert "Replace" in (note.excerpt or "")
