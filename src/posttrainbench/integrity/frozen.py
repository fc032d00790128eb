"""The frozen copy of the agent's workspace that every integrity check reads.

Taken at collect, once no process of the agent is alive: regular files are copied (never
followed through links: a link is recreated as a link, so checks see where it pointed), with their
sha256 and size in `manifest.json`. Weights and pickles are listed, not copied (final_model's
loadable files are already in the collected copy; the checks need to know the rest exist, not
their bytes), and so is anything past the size caps. FIFOs, sockets and devices are listed and
never opened. Checks never read the live workspace after collect, and never run what is here;
they open what is here with `open_inside`, which follows no link on the way, so a link the agent
left (to /etc/passwd, the harness's cache, another run) is only ever listed, never read.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

from pydantic import Field

from posttrainbench.records import Versioned
from posttrainbench.results.store import read_json, write_json

WEIGHT_SUFFIXES = frozenset(
    {".safetensors", ".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".gguf", ".h5", ".onnx"}
    | {".msgpack", ".npy", ".npz", ".joblib"}
)
MAX_FILE_BYTES = 4 << 30
MAX_TOTAL_BYTES = 64 << 30
CHUNK = 1 << 20

FrozenKind = Literal["copied", "listed", "symlink", "special", "unreadable"]


class FrozenFile(Versioned):
    path: str
    kind: FrozenKind
    size: int = 0
    sha256: str | None = None
    target: str | None = Field(default=None, description="A symlink's target, as written.")
    reason: str | None = Field(default=None, description="Why it was listed and not copied.")


class FrozenManifest(Versioned):
    files: list[FrozenFile] = Field(default_factory=list)
    copied_bytes: int = 0

    def listed(self) -> list[FrozenFile]:
        return [f for f in self.files if f.kind != "copied"]


def freeze(
    workspace: Path,
    dest: Path,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> FrozenManifest:
    """Copy `workspace` to `dest` (replacing it) and write `dest/../frozen.json`."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    manifest = FrozenManifest()
    for dirpath, dirs, names in os.walk(workspace, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(workspace)
        (dest / rel_dir).mkdir(exist_ok=True)
        for name in sorted(names) + sorted(d for d in dirs if (here / d).is_symlink()):
            entry = _freeze_one(here / name, dest / rel_dir / name, (rel_dir / name).as_posix())
            if entry.kind == "copied":
                limit = min(max_file_bytes, max_total_bytes - manifest.copied_bytes)
                if entry.size > limit:
                    (dest / entry.path).unlink()
                    entry.kind, entry.reason = "listed", "over the frozen copy's size cap"
                else:
                    manifest.copied_bytes += entry.size
            manifest.files.append(entry)
        dirs[:] = sorted(d for d in dirs if not (here / d).is_symlink())
    manifest.files.sort(key=lambda f: f.path)
    write_json(manifest_path(dest), manifest)
    return manifest


def manifest_path(frozen_dir: Path) -> Path:
    return frozen_dir.parent / "frozen.json"


def load_manifest(frozen_dir: Path) -> FrozenManifest:
    return read_json(manifest_path(frozen_dir), FrozenManifest)


def open_inside(root: Path, rel: str) -> BinaryIO:
    """`root/rel` opened for reading, following no link on the way: each folder is opened below
    the one before with O_NOFOLLOW, and only a regular file opens (a link, a path through one, a
    FIFO or a device raises OSError). Never blocks, never leaves `root`."""
    parts = PurePosixPath(rel).parts
    if not parts or any(part in ("/", "..", ".") for part in parts):
        raise OSError(errno.EINVAL, "not a path inside the folder", rel)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            below = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = below
        leaf = os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(leaf).st_mode):
        os.close(leaf)
        raise OSError(errno.EINVAL, "not a regular file", rel)
    return os.fdopen(leaf, "rb")


def read_inside(root: Path, rel: str) -> bytes:
    with open_inside(root, rel) as f:
        return f.read()


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _freeze_one(src: Path, dst: Path, rel: str) -> FrozenFile:
    try:
        st = src.lstat()
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(src)
            os.symlink(target, dst)
            return FrozenFile(path=rel, kind="symlink", target=target)
        if not stat.S_ISREG(st.st_mode):
            return FrozenFile(path=rel, kind="special", reason=stat.filemode(st.st_mode))
        if Path(rel).suffix.lower() in WEIGHT_SUFFIXES:
            return FrozenFile(path=rel, kind="listed", size=st.st_size, reason="weights or pickle")
        return _copy(src, dst, rel)
    except OSError as exc:
        return FrozenFile(path=rel, kind="unreadable", reason=exc.strerror or str(exc))


def _copy(src: Path, dst: Path, rel: str) -> FrozenFile:
    digest = hashlib.sha256()
    size = 0
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as fin, dst.open("wb") as fout:
        while block := fin.read(CHUNK):
            digest.update(block)
            fout.write(block)
            size += len(block)
    return FrozenFile(path=rel, kind="copied", size=size, sha256=digest.hexdigest())
