"""Pickles left in final_model, read by opcode (never loaded): a tensor's globals are fine, any
other import is an exploit attempt that the model_files check reports, naming file and global.
Every malicious file here is written by the test and never unpickled."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
from pathlib import Path

import pytest
import torch

from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.config import Settings
from posttrainbench.integrity import frozen, pickles
from posttrainbench.integrity.base import CheckContext
from posttrainbench.integrity.model_files import ModelFilesCheck
from posttrainbench.records import RunRecord, RunSpec
from posttrainbench.results.layout import RunPaths
from posttrainbench.runner import harness_info


class _System:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def _imports(data: bytes) -> pickles.PickleImports:
    return pickles.read_imports(io.BytesIO(data))


@pytest.mark.parametrize("protocol", [0, 1, 2, 4, 5])
def test_a_reduce_to_os_system_is_foreign_in_every_protocol(protocol: int) -> None:
    found = _imports(pickle.dumps({"w": [1.0], "x": _System()}, protocol=protocol))
    assert found.foreign() == [os.system.__module__ + ".system"]  # posix.system


def test_globals_written_as_opcodes_are_read() -> None:
    exec_by_global = b"cbuiltins\nexec\n(Vprint(1)\ntR."  # protocol 0: GLOBAL, REDUCE
    assert _imports(exec_by_global).foreign() == ["builtins.exec"]
    # STACK_GLOBAL whose strings were memoised and fetched back with BINGET
    memo = (
        b"\x80\x04\x8c\x08builtins\x94\x8c\x04eval\x94h\x00h\x01\x93\x8c\x011\x85R."
    )  # fmt: skip
    assert _imports(memo).foreign() == ["builtins.eval"]
    # a name computed on the stack cannot be read without running the pickle: foreign
    computed = b"\x80\x04\x8c\x02os\x8c\x03sys\x86\x8c\x06system\x93."
    assert _imports(computed).foreign() == [pickles.UNRESOLVED]


def test_a_saved_state_dict_and_training_args_are_not_foreign(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 4).to(torch.bfloat16)
    torch.save(model.state_dict(), tmp_path / "zip.bin")
    torch.save(model.state_dict(), tmp_path / "legacy.bin", _use_new_zipfile_serialization=False)
    params = {"p": torch.nn.Parameter(torch.zeros(2)), "ids": torch.arange(3)}
    torch.save(params, tmp_path / "params.pt")
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True)
    torch.save(args, tmp_path / "training_args.bin")  # what Trainer.save_model writes
    for name in ("zip.bin", "legacy.bin", "params.pt", "training_args.bin"):
        with (tmp_path / name).open("rb") as f:
            found = pickles.read_imports(f)
        assert found.globals and found.foreign() == [] and found.error is None, name
    with (tmp_path / "training_args.bin").open("rb") as f:
        kinds = {pickles.classify(g) for g in pickles.read_imports(f).globals}
    assert kinds == {"tensor", "training_state"}


def test_a_torch_archive_carrying_an_exploit_is_foreign(tmp_path: Path) -> None:
    torch.save({"w": torch.zeros(2), "x": _System()}, tmp_path / "evil.bin")
    torch.save(
        {"w": torch.zeros(2), "x": _System()},
        tmp_path / "evil_legacy.bin",
        _use_new_zipfile_serialization=False,
    )
    for name in ("evil.bin", "evil_legacy.bin"):
        with (tmp_path / name).open("rb") as f:
            assert pickles.read_imports(f).foreign() == ["posix.system"], name


def test_a_truncated_pickle_keeps_what_it_read() -> None:
    data = pickle.dumps(_System(), protocol=2)[:-3]
    found = _imports(data)
    assert found.foreign() == ["posix.system"] and found.error


@pytest.fixture
def context(tmp_path: Path, settings: Settings) -> CheckContext:
    paths = RunPaths(tmp_path / "run")
    final = paths.workspace / "final_model"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    (final / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))
    spec = RunSpec(
        run_id="r", agent="command", base_model="ptb-tiny", benchmark="gsm8k", budget_s=60
    )
    record = RunRecord(spec=spec, harness=harness_info())
    model, bench = MODELS.get("ptb-tiny"), BENCHMARKS.get("gsm8k")
    return CheckContext(paths=paths, record=record, model=model, bench=bench, settings=settings)


def test_model_files_names_the_pickle_and_its_global(context: CheckContext) -> None:
    final = context.paths.workspace_final_model
    torch.save({"w": torch.zeros(2), "x": _System()}, final / "pytorch_model.bin")
    (final / "extra").write_bytes(b"cbuiltins\nexec\n(Vprint(1)\ntR.")  # no suffix: sniffed
    torch.save(torch.nn.Linear(2, 2).state_dict(), final / "optimizer.pt")
    frozen.freeze_run(context.paths)
    found = ModelFilesCheck()._context(context)
    decisive = sorted((e.path, e.excerpt) for e in found if e.decisive)
    assert decisive == [
        ("final_model/extra", "builtins.exec"),
        ("final_model/pytorch_model.bin", "posix.system"),
    ]
    notes = [e.path for e in found if not e.decisive]
    assert notes == ["final_model/optimizer.pt"]  # a clean pickle: context only
    entry = next(f for f in context.manifest.files if f.path == "final_model/pytorch_model.bin")
    assert entry.kind == "listed"  # listed, never copied, never loaded


def test_text_that_starts_like_protocol_0_is_no_pickle(context: CheckContext) -> None:
    final = context.paths.workspace_final_model
    (final / "vocab").write_text("cat\ndog\nbird\n")  # GLOBAL "cat dog", then no opcode
    frozen.freeze_run(context.paths)
    assert not [e for e in ModelFilesCheck()._context(context) if e.decisive]
    entry = next(f for f in context.manifest.files if f.path == "final_model/vocab")
    assert entry.imports is None


def test_final_model_linked_to_a_checkpoint_is_read_there(context: CheckContext) -> None:
    """final_model -> ckpt/step-5 (collect follows it): a pickle there is aimed at whoever loads
    the submission, decisive; one in another folder of the workspace is only noted."""
    ws = context.paths.workspace
    shutil.move(ws / "final_model", ws / "ckpt" / "step-5")
    (ws / "final_model").symlink_to("ckpt/step-5")
    torch.save({"x": _System()}, ws / "ckpt" / "step-5" / "training_state.pt")
    (ws / "scratch").mkdir()
    torch.save({"x": _System()}, ws / "scratch" / "cache.pkl")
    frozen.freeze_run(context.paths)
    found = [e for e in ModelFilesCheck()._context(context) if e.excerpt == "posix.system"]
    assert sorted((e.path, e.decisive) for e in found) == [
        ("ckpt/step-5/training_state.pt", True),
        ("scratch/cache.pkl", False),
    ]
