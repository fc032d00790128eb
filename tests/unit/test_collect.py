import hashlib
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from posttrainbench.records import CollectOutcome
from posttrainbench.workspace import collect
from posttrainbench.workspace.collect import collect_final_model

GIB = 2**30


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A run's workspace; collect copies <ws>/final_model to <ws>/../final_model."""
    path = tmp_path / "run" / "workspace"
    path.mkdir(parents=True)
    return path


def model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "tokenizer.json").write_text('{"t": 1}')
    return folder


def run_collect(
    ws: Path, *, max_bytes: int = GIB, max_files: int = 100, timeout: float = 30
) -> CollectOutcome:
    """collect_final_model as the runner calls it, failing (not hanging) if it blocks."""
    got: list[CollectOutcome] = []

    def target() -> None:
        got.append(
            collect_final_model(
                ws / "final_model",
                ws.parent / "final_model",
                workspace=ws,
                max_bytes=max_bytes,
                max_files=max_files,
            )
        )

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "collect blocked"
    assert got, "collect raised"
    return got[0]


def skipped(out: CollectOutcome) -> dict[str, str]:
    return {s.path: s.reason for s in out.skipped}


def test_collects_model_files_with_sizes_digests_and_modes(ws: Path) -> None:
    src = model(ws / "final_model")
    (src / "README.md").write_text("notes")
    (src / "train.py").write_text("print()")
    (src / "sub").mkdir()
    (src / "sub" / "vocab.txt").write_text("a b")
    out = run_collect(ws)
    assert out.status == "collected" and out.reason is None
    paths = ["config.json", "model.safetensors", "sub/vocab.txt", "tokenizer.json"]
    assert out.file_names == paths
    assert [s.path for s in out.skipped] == ["README.md", "train.py"]
    assert {s.reason for s in out.skipped} == {"not a model file"}
    dest = ws.parent / "final_model"
    for f in out.files:
        data = (src / f.path).read_bytes()
        assert (dest / f.path).read_bytes() == data
        assert f.bytes == len(data) and f.sha256 == hashlib.sha256(data).hexdigest()
        assert stat.S_IMODE((dest / f.path).stat().st_mode) == 0o644
    assert out.total_bytes == sum(f.bytes for f in out.files)
    assert stat.S_IMODE(dest.stat().st_mode) == stat.S_IMODE((dest / "sub").stat().st_mode) == 0o755
    assert sorted(p.name for p in ws.parent.iterdir()) == ["final_model", "workspace"]  # no temp


def test_outcome_lists_are_sorted_by_path(ws: Path) -> None:
    src = model(ws / "final_model")
    for name in ["z.txt", "b.md", "a/c.json", "y.pt", "m.txt", "a.py"]:
        (src / name).parent.mkdir(exist_ok=True)
        (src / name).write_text("x")
    out = run_collect(ws)
    assert out.file_names == sorted(out.file_names)
    assert [s.path for s in out.skipped] == sorted(s.path for s in out.skipped)


@pytest.mark.parametrize(
    "name", ["training_args.bin", "optimizer.pt", "rng_state.pth", "x.pkl", "a.npy", "s.ckpt"]
)
def test_pickles_beside_safetensors_are_left_behind(ws: Path, name: str) -> None:
    src = model(ws / "final_model")
    (src / name).write_bytes(b"\x80\x04")
    out = run_collect(ws)
    assert out.status == "collected"
    assert skipped(out) == {name: "pickle file: never loaded"}
    assert not (ws.parent / "final_model" / name).exists()


def test_only_pickled_weights_is_refused(ws: Path) -> None:
    src = ws / "final_model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (src / "pytorch_model.bin").write_bytes(b"\x80\x04")
    out = run_collect(ws)
    assert out.status == "refused"
    assert "pickle" in (out.reason or "") and "pytorch_model.bin" in (out.reason or "")
    assert not (ws.parent / "final_model").exists()


def test_missing_and_incomplete(ws: Path) -> None:
    out = run_collect(ws)
    assert out.status == "missing" and out.reason == "the agent left no final_model/ folder"
    src = ws / "final_model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    out = run_collect(ws)
    assert out.status == "refused" and "safetensors" in (out.reason or "")
    (src / "config.json").unlink()
    (src / "model.safetensors").write_bytes(b"w")
    out = run_collect(ws)
    assert out.status == "refused" and "config.json" in (out.reason or "")


@pytest.mark.parametrize("kind", ["file", "fifo"])
def test_final_model_that_is_not_a_folder_is_refused(ws: Path, kind: str) -> None:
    if kind == "file":
        (ws / "final_model").write_text("{}")
    else:
        os.mkfifo(ws / "final_model")
    out = run_collect(ws)
    assert out.status == "refused"
    assert (
        out.reason
        == f"final_model is a {'regular file' if kind == 'file' else 'fifo'}, not a directory"
    )


def test_resumed_collect_replaces_previous_dest_and_a_refusal_removes_it(ws: Path) -> None:
    dest = ws.parent / "final_model"
    dest.mkdir()
    (dest / "stale.json").write_text("{}")
    src = model(ws / "final_model")
    out = run_collect(ws)
    assert out.status == "collected"
    assert sorted(p.name for p in dest.iterdir()) == out.file_names
    (src / "model.safetensors").unlink()
    assert run_collect(ws).status == "refused"
    assert not dest.exists()


def test_too_many_files_is_refused_with_the_bound(ws: Path) -> None:
    src = model(ws / "final_model")
    for i in range(5):
        (src / f"extra{i}.json").write_text("{}")
    out = run_collect(ws, max_files=4)
    assert out.status == "refused"
    reason = out.reason or ""
    assert "8" in reason and "4" in reason and "PTB_COLLECT_MAX_FILES" in reason
    assert not (ws.parent / "final_model").exists()


def test_too_many_bytes_is_refused_before_reading(ws: Path) -> None:
    src = model(ws / "final_model")
    with open(src / "model.safetensors", "wb") as f:
        f.truncate(3 * GIB)  # sparse: nothing to read, but 3 GB by stat
    start = time.monotonic()
    out = run_collect(ws, max_bytes=GIB)
    assert time.monotonic() - start < 5
    assert out.status == "refused"
    reason = out.reason or ""
    assert "3.00 GB" in reason and "1.00 GB" in reason and "PTB_COLLECT_MAX_GB" in reason
    assert not (ws.parent / "final_model").exists()


def test_the_walk_stops_after_the_entry_cap(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collect, "MIN_ENTRY_CAP", 50)
    src = model(ws / "final_model")
    for i in range(60):
        (src / f"junk{i}.md").write_text("")
    out = run_collect(ws, max_files=2)
    assert out.status == "refused" and out.reason == "final_model has more than 50 entries"
