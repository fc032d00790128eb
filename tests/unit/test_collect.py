import os
from pathlib import Path

import pytest

from posttrainbench.workspace.collect import collect_final_model


def _model(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text("{}")
    (root / "model.safetensors").write_bytes(b"weights")
    (root / "tokenizer.json").write_text("{}")
    return root


def test_collects_allowed_files_and_skips_the_rest(tmp_path: Path) -> None:
    src = _model(tmp_path / "ws" / "final_model")
    (src / "README.md").write_text("notes")
    (src / "train.py").write_text("print()")
    out = collect_final_model(src, tmp_path / "final_model")
    assert out.status == "collected"
    assert out.files == ["config.json", "model.safetensors", "tokenizer.json"]
    assert out.skipped == ["README.md", "train.py"]
    assert sorted(p.name for p in (tmp_path / "final_model").iterdir()) == out.files


@pytest.mark.parametrize("name", ["pytorch_model.bin", "training_args.bin", "weights.pt", "x.pkl"])
def test_pickle_is_refused(tmp_path: Path, name: str) -> None:
    src = _model(tmp_path / "final_model")
    (src / name).write_bytes(b"\x80\x04")
    out = collect_final_model(src, tmp_path / "out")
    assert out.status == "refused" and name in (out.reason or "")
    assert not (tmp_path / "out").exists()


def test_symlinks_are_refused(tmp_path: Path) -> None:
    src = _model(tmp_path / "final_model")
    os.symlink("/etc/passwd", src / "vocab.txt")
    assert collect_final_model(src, tmp_path / "out").status == "refused"
    link = tmp_path / "ws" / "final_model"
    link.parent.mkdir()
    os.symlink(src, link)
    out = collect_final_model(link, tmp_path / "out")
    assert out.status == "refused" and out.reason == "final_model is a symlink"


def test_missing_and_incomplete(tmp_path: Path) -> None:
    assert collect_final_model(tmp_path / "nothing", tmp_path / "out").status == "missing"
    src = tmp_path / "final_model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    out = collect_final_model(src, tmp_path / "out")
    assert out.status == "refused" and "safetensors" in (out.reason or "")
