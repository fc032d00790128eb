"""The pristine evaluation through inspect-ai's hf provider on the embedded model (CPU)."""

import json
import shutil
from pathlib import Path

import pytest

from posttrainbench.errors import EvaluationError
from posttrainbench.evaluate.run import evaluate_model, has_chat_template


def test_evaluates_and_writes_metrics(tiny_model_dir: Path, tmp_path: Path) -> None:
    m = evaluate_model(
        tiny_model_dir, "arith", tmp_path / "eval", limit=8, template_family="ptb-tiny"
    )
    assert m.n_samples == 8 and 0.0 <= m.score <= 1.0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["score"] == m.score
    assert m.log_file and Path(m.log_file.removeprefix("file://")).exists()
    assert m.params["harness_template"] is None  # the model carries its own template


def test_family_template_used_when_model_has_none(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    (model / "chat_template.jinja").unlink(missing_ok=True)
    assert not has_chat_template(model)
    m = evaluate_model(model, "arith", tmp_path / "eval", limit=4, template_family="ptb-tiny")
    assert m.params["harness_template"] == "ptb-tiny"


def test_unloadable_model_fails_loudly(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EvaluationError, match="SafetensorError"):
        evaluate_model(model, "arith", tmp_path / "eval", limit=4)
