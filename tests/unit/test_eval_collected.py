"""The evaluation loads exactly what collect recorded, and tokenises with the base's tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from posttrainbench.errors import EvaluationError
from posttrainbench.evaluate.__main__ import EXIT_CODES, main
from posttrainbench.evaluate.backends import BACKENDS, ModelRequest
from posttrainbench.evaluate.launch import COLLECTED_FILE
from posttrainbench.evaluate.run import check_collected
from tests.unit.test_collect import model, run_collect


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "workspace"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def collected(ws: Path) -> tuple[Path, Path]:
    """(the collected copy, collect's record of it written as the harness passes it)."""
    model(ws / "final_model")
    out = run_collect(ws)
    assert out.status == "collected"
    record = ws.parent / COLLECTED_FILE
    record.write_text(out.model_dump_json())
    return ws.parent / "final_model", record


def test_the_recorded_copy_passes(collected: tuple[Path, Path]) -> None:
    check_collected(*collected)


def test_a_changed_weight_file_is_refused(collected: tuple[Path, Path]) -> None:
    dest, record = collected
    (dest / "model.safetensors").write_bytes(b"swapped")
    with pytest.raises(EvaluationError, match="differs from what collect recorded") as got:
        check_collected(dest, record)
    assert got.value.kind == "fatal" and "model.safetensors" in got.value.message


def test_weights_added_after_collect_are_refused(collected: tuple[Path, Path]) -> None:
    dest, record = collected
    (dest / "zz.safetensors").write_bytes(b"other")
    with pytest.raises(EvaluationError, match=r"zz\.safetensors"):
        check_collected(dest, record)


def test_the_evaluation_process_refuses_before_loading(collected: tuple[Path, Path]) -> None:
    """Through the entry point the harness runs: bad input (exit 2), the ladder stops."""
    dest, record = collected
    (dest / "model.safetensors").write_bytes(b"swapped")
    argv = ["--benchmark", "arith", "--model-path", str(dest), "--collected", str(record)]
    assert main(argv) == EXIT_CODES["fatal"]


@pytest.mark.parametrize(("backend", "key"), [("hf", "tokenizer_path"), ("vllm", "tokenizer")])
def test_backends_tokenise_with_the_given_tokenizer(tmp_path: Path, backend: str, key: str) -> None:
    (tmp_path / "config.json").write_text("{}")
    req = ModelRequest(model_dir=tmp_path, template_file=None, tokenizer_dir=Path("/base"))
    assert BACKENDS.get(backend).model(req).args[key] == "/base"
    own = ModelRequest(model_dir=tmp_path, template_file=None)
    assert key not in BACKENDS.get(backend).model(own).args
