"""collect_final_model against a hostile workspace: special files, links, races, unreadables."""

import errno
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from posttrainbench.workspace import collect
from tests.unit.test_collect import model, run_collect, skipped


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "workspace"
    path.mkdir(parents=True)
    return path


def test_fifo_socket_and_device_are_skipped_without_being_opened(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = model(ws / "final_model")
    os.mkfifo(src / "vocab.txt")  # opening it for reading would block forever
    (src / "sub").mkdir()
    os.mkfifo(src / "sub" / "merges.txt")
    monkeypatch.chdir(src)  # AF_UNIX paths are short
    sock = socket.socket(socket.AF_UNIX)
    sock.bind("special_tokens_map.json")
    expected = {
        "vocab.txt": "a fifo, not a regular file",
        "sub/merges.txt": "a fifo, not a regular file",
        "special_tokens_map.json": "a socket, not a regular file",
    }
    try:
        os.mknod(src / "added_tokens.json", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        expected["added_tokens.json"] = "a device, not a regular file"
    except PermissionError:
        pass  # no CAP_MKNOD here; fifo and socket still run
    try:
        out = run_collect(ws)
    finally:
        sock.close()
    assert out.status == "collected"
    assert skipped(out) == expected
    assert out.file_names == ["config.json", "model.safetensors", "tokenizer.json"]


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("config.json", "fifo", "config.json is a fifo, not a regular file"),
        ("model.safetensors", "fifo", "model.safetensors is a fifo, not a regular file"),
        ("config.json", "dir", "config.json is a directory, not a regular file"),
        ("model-00002-of-00002.safetensors", "dir", "model-00002-of-00002.safetensors is a dir"),
    ],
)
def test_unusable_required_file_refuses(ws: Path, name: str, make: str, reason: str) -> None:
    src = model(ws / "final_model")
    if (src / name).exists():
        (src / name).unlink()
    if make == "fifo":
        os.mkfifo(src / name)
    else:
        (src / name).mkdir()
    out = run_collect(ws)
    assert out.status == "refused" and (out.reason or "").startswith(reason)
    assert not (ws.parent / "final_model").exists()


def _deny(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """os.open of `name` below a directory fd fails with EACCES (root cannot chmod this)."""
    real_open = os.open

    def fake(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if path == name and dir_fd is not None:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", fake)


def test_unreadable_file_is_skipped_with_the_errno_text(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model(ws / "final_model")
    _deny(monkeypatch, "tokenizer.json")
    out = run_collect(ws)
    assert out.status == "collected"
    assert skipped(out) == {"tokenizer.json": "unreadable (Permission denied)"}
    assert out.file_names == ["config.json", "model.safetensors"]
    assert not (ws.parent / "final_model" / "tokenizer.json").exists()


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_unreadable_required_file_refuses(
    ws: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    model(ws / "final_model")
    _deny(monkeypatch, name)
    out = run_collect(ws)
    assert out.status == "refused" and out.reason == f"{name} is unreadable (Permission denied)"
    assert not (ws.parent / "final_model").exists()


def test_chmod_000_file_is_skipped(ws: Path) -> None:
    """Unprivileged (scripts/test-unprivileged.sh runs this file so in CI) the file is skipped;
    root reads files whatever their mode, so there it is collected."""
    src = model(ws / "final_model")
    (src / "tokenizer.json").chmod(0)
    try:
        out = run_collect(ws)
    finally:
        (src / "tokenizer.json").chmod(0o644)
    assert out.status == "collected"
    if os.geteuid() == 0:
        assert skipped(out) == {} and "tokenizer.json" in out.file_names
    else:
        assert skipped(out) == {"tokenizer.json": "unreadable (Permission denied)"}


def _assert_plain_copy(ws: Path, names: list[str]) -> None:
    dest = ws.parent / "final_model"
    assert not dest.is_symlink()
    for name in names:
        assert (dest / name).is_file() and not (dest / name).is_symlink()


def test_final_model_linked_to_a_checkpoint_inside_the_workspace(ws: Path) -> None:
    model(ws / "checkpoints" / "step-500")
    os.symlink("checkpoints/step-500", ws / "final_model")
    out = run_collect(ws)
    assert out.status == "collected"
    assert out.file_names == ["config.json", "model.safetensors", "tokenizer.json"]
    _assert_plain_copy(ws, out.file_names)


def test_hf_cache_style_snapshot_inside_the_workspace(ws: Path) -> None:
    repo = ws / "hf" / "models--org--tuned"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    for i, (name, data) in enumerate([("config.json", b"{}"), ("model.safetensors", b"w" * 9)]):
        (repo / "blobs" / f"sha{i}").write_bytes(data)
        os.symlink(f"../../blobs/sha{i}", snapshot / name)
    os.symlink("hf/models--org--tuned/snapshots/abc123", ws / "final_model")
    out = run_collect(ws)
    assert out.status == "collected"
    assert [(f.path, f.bytes) for f in out.files] == [("config.json", 2), ("model.safetensors", 9)]
    _assert_plain_copy(ws, out.file_names)


def test_file_link_inside_the_workspace_is_followed(ws: Path) -> None:
    src = model(ws / "final_model")
    (ws / "ckpt").mkdir()
    (src / "model.safetensors").rename(ws / "ckpt" / "model.safetensors")
    os.symlink("../ckpt/model.safetensors", src / "model.safetensors")
    out = run_collect(ws)
    assert out.status == "collected"
    assert (ws.parent / "final_model" / "model.safetensors").read_bytes() == b"weights"
    _assert_plain_copy(ws, out.file_names)


@pytest.mark.parametrize("where", ["absolute", "other_run", "hf_cache", "dangling_outside"])
def test_link_outside_the_workspace_refuses(ws: Path, tmp_path: Path, where: str) -> None:
    src = model(ws / "final_model")
    other = tmp_path / "other_run" / "workspace" / "final_model"
    model(other)
    cache = tmp_path / "hf_cache" / "hub" / "models--base" / "snapshots" / "x"
    model(cache)
    name, target = {
        "absolute": ("vocab.txt", "/etc/passwd"),
        "other_run": ("model.safetensors", "../../../other_run/workspace/final_model/x"),
        "hf_cache": ("model.safetensors", str(cache / "model.safetensors")),
        "dangling_outside": ("sub/vocab.txt", "/nonexistent/secret"),
    }[where]
    if where == "other_run":
        target = target[: -len("x")] + "model.safetensors"
    (src / name).parent.mkdir(exist_ok=True)
    (src / name).unlink(missing_ok=True)
    os.symlink(target, src / name)
    out = run_collect(ws)
    assert out.status == "refused"
    assert out.reason == f"{name} is a symlink to {target}, which points outside the workspace"
    assert not (ws.parent / "final_model").exists()


def test_final_model_linked_outside_the_workspace_refuses(ws: Path, tmp_path: Path) -> None:
    model(tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", ws / "final_model")
    out = run_collect(ws)
    assert out.status == "refused" and "final_model" in (out.reason or "")
    assert "outside the workspace" in (out.reason or "")


def test_dangling_links_cycles_and_loops_are_skipped(ws: Path) -> None:
    src = model(ws / "final_model")
    os.symlink("missing.txt", src / "vocab.txt")
    os.symlink(".", src / "again")  # a directory cycle
    (src / "sub").mkdir()
    os.symlink("..", src / "sub" / "up")
    os.symlink("b.json", src / "a.json")  # a link loop
    os.symlink("a.json", src / "b.json")
    out = run_collect(ws)
    assert out.status == "collected"
    assert out.file_names == ["config.json", "model.safetensors", "tokenizer.json"]
    reasons = skipped(out)
    assert set(reasons) == {"vocab.txt", "again", "sub/up", "a.json", "b.json"}
    assert reasons["vocab.txt"].startswith("a broken symlink")
    assert "cycle" in reasons["again"] and "cycle" in reasons["sub/up"]


def test_very_deep_tree_is_cut_at_the_depth_cap(ws: Path) -> None:
    src = model(ws / "final_model")
    deep = src.joinpath(*["d"] * (collect.MAX_DEPTH + 3))
    deep.mkdir(parents=True)
    (deep / "x.json").write_text("{}")
    (src.joinpath(*["d"] * collect.MAX_DEPTH) / "ok.json").write_text("{}")
    out = run_collect(ws)
    assert out.status == "collected"
    assert "/".join(["d"] * collect.MAX_DEPTH) + "/ok.json" in out.file_names
    cut = "/".join(["d"] * (collect.MAX_DEPTH + 1))
    assert skipped(out) == {cut: f"a folder more than {collect.MAX_DEPTH} levels deep"}


def _after_check(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Run `change` between collect's check and its copy."""
    real_plan = collect._plan

    def plan(*args: Any, **kwargs: Any) -> Any:
        keep = real_plan(*args, **kwargs)
        change()
        return keep

    monkeypatch.setattr(collect, "_plan", plan)


@pytest.mark.parametrize("how", ["grow", "shrink", "swap_for_link", "swap_folder_for_link"])
def test_file_changed_after_the_check_refuses(
    ws: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    src = model(ws / "final_model")
    weights = src / "model.safetensors"

    def change() -> None:
        if how == "grow":
            with open(weights, "ab") as f:
                f.write(b"more")
        elif how == "shrink":
            weights.write_bytes(b"w")
        elif how == "swap_for_link":
            weights.unlink()
            os.symlink("/etc/passwd", weights)
        else:
            src.rename(ws / "moved")
            os.symlink(ws / "moved", src)

    _after_check(monkeypatch, change)
    out = run_collect(ws)
    assert out.status == "refused"
    assert "changed while being collected" in (out.reason or "")
    assert not (ws.parent / "final_model").exists()
    assert sorted(p.name for p in ws.parent.iterdir()) == ["workspace"]  # no temp left


def test_never_copies_more_than_was_checked(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = model(ws / "final_model")
    real_fstat = os.fstat
    inode = (src / "model.safetensors").stat().st_ino

    def fstat_then_grow(fd: int) -> os.stat_result:
        st = real_fstat(fd)
        if st.st_ino == inode:  # the weights grow once their fstat has passed
            with open(src / "model.safetensors", "ab") as f:
                f.write(b"appended after the check")
        return st

    monkeypatch.setattr(os, "fstat", fstat_then_grow)
    out = run_collect(ws)
    assert out.status == "collected"
    assert (ws.parent / "final_model" / "model.safetensors").read_bytes() == b"weights"
