"""The frozen copy of what the agent left that every integrity check reads: its workspace, and
its HOME, /tmp and /var/tmp (`TREES`: frozen/<tree>/, each with its manifest).

Taken at collect, once no process of the agent is alive: regular files are copied (never
followed through links: a link is recreated as a link, so checks see where it pointed), with their
sha256 and size in `manifest.json`. Weights and pickles are listed, not copied (final_model's
loadable files are already in the collected copy; the checks need to know the rest exist, not
their bytes), and so is anything past the size caps. FIFOs, sockets and devices are listed and
never opened. Checks never read the live workspace after collect, and never run what is here;
they open what is here with `open_inside`, which follows no link on the way, so a link the agent
left (to /etc/passwd, the harness's cache, another run) is only ever listed, never read.

HOME and the temporary folders hold caches (pip, the hub's blobs, datasets' arrow files): what
is there is copied as in the workspace, but the large files of installers' and compilers' caches
(`TOOL_CACHES`: wheels, kernels) are listed, as are weights recognised by their header whatever
their name (a hub blob has none). Arrays and tensors up to `MAX_ARRAY_BYTES` outside final_model
are copied (token ids kept as tensors are decoded, never unpickled). Every pickle or torch
archive of the workspace is read with `pickletools` as it is frozen (never loaded): the globals
it would import are kept in its entry (`imports`) for the model_files check.
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

from posttrainbench.integrity import pickles
from posttrainbench.records import Versioned
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.store import read_json, write_json

WEIGHT_SUFFIXES = frozenset(
    {".safetensors", ".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".gguf", ".h5", ".onnx"}
    | {".msgpack", ".npy", ".npz", ".joblib"}
)
MAX_FILE_BYTES = 4 << 30
MAX_TOTAL_BYTES = 64 << 30
CHUNK = 1 << 20
LARGE_BINARY = 8 << 20  # in a tool cache of HOME or /tmp: a larger file is listed
MODEL_DIR = "final_model"
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"})
# Arrays and tensors this small are copied, outside final_model: token ids are kept this way
# (decontamination decodes them: integrity/token_texts.py, never unpickling).
ARRAY_SUFFIXES = frozenset({".npy", ".npz", ".pt", ".pth"})
MAX_ARRAY_BYTES = 256 << 20
# The trees of the agent's run directory frozen at collect: name -> where it is in the run dir.
TREES = ("workspace", "home", "tmp", "var_tmp")
_MANIFESTS = {"home": "home.json", "tmp": "tmp.json", "var_tmp": "var_tmp.json"}
# Installers' and compilers' caches in HOME and /tmp: software, not data. Their files over
# LARGE_BINARY (pip's wheels, compiled kernels, the hub's xet chunks) are listed, not copied.
TOOL_CACHES = (
    ".cache/pip", ".cache/uv", ".npm", ".triton", ".nv", ".cache/torch",
    ".cache/torch_extensions", ".cache/huggingface/xet", ".local/lib", ".local/share/uv",
)  # fmt: skip
_TOOL_PREFIXES = ("pip-", "torchinductor_", "triton_", "tmp_xet")

FrozenKind = Literal["copied", "listed", "symlink", "special", "unreadable"]


class FrozenFile(Versioned):
    path: str
    kind: FrozenKind
    size: int = 0
    sha256: str | None = None
    target: str | None = Field(default=None, description="A symlink's target, as written.")
    reason: str | None = Field(default=None, description="Why it was listed and not copied.")
    imports: list[str] | None = Field(
        default=None, description="A pickle's globals (pickletools, never loaded); final_model."
    )
    imports_error: str | None = Field(default=None, description="Why reading them stopped.")


class FrozenManifest(Versioned):
    files: list[FrozenFile] = Field(default_factory=list)
    copied_bytes: int = 0

    def listed(self) -> list[FrozenFile]:
        return [f for f in self.files if f.kind != "copied"]


def freeze_run(paths: RunPaths, *, missing_only: bool = False) -> dict[str, FrozenManifest]:
    """Freeze every tree of `TREES` the run has (a missing one gets an empty manifest);
    `missing_only`: only those without a manifest yet (a run collected by an older ptb)."""
    sources = {
        "workspace": paths.workspace,
        "home": paths.agent_home,
        "tmp": paths.agent_tmp,
        "var_tmp": paths.agent_var_tmp,
    }
    return {
        name: freeze(sources[name], paths.frozen_tree(name), caches=name != "workspace")
        for name in TREES
        if not (missing_only and manifest_path(paths.frozen_tree(name)).is_file())
    }


def freeze(
    workspace: Path,
    dest: Path,
    *,
    max_file_bytes: int = MAX_FILE_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
    caches: bool = False,
) -> FrozenManifest:
    """Copy `workspace` to `dest` (replacing it) and write its manifest (`manifest_path`).
    `caches`: a HOME or temporary folder (data copied, large binaries listed)."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    manifest = FrozenManifest()
    for dirpath, dirs, names in os.walk(workspace, followlinks=False):
        here = Path(dirpath)
        rel_dir = here.relative_to(workspace)
        (dest / rel_dir).mkdir(exist_ok=True)
        for name in sorted(names) + sorted(d for d in dirs if (here / d).is_symlink()):
            rel = (rel_dir / name).as_posix()
            entry = _freeze_one(here / name, dest / rel_dir / name, rel, caches=caches)
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


def agent_trees(paths: RunPaths) -> list[tuple[str, Path]]:
    """(name, frozen folder) of HOME, /tmp and /var/tmp as frozen at collect, those the run has;
    a scan names what it finds there `<name>/<path>` (home/.cache/…, tmp/…)."""
    found = []
    for name in TREES[1:]:
        folder = paths.frozen_tree(name)
        if manifest_path(folder).is_file() and folder.is_dir():
            found.append((name, folder))
    return found


def manifest_path(frozen_dir: Path) -> Path:
    """frozen/frozen.json for the workspace (as before there were trees), <tree>.json else."""
    return frozen_dir.parent / _MANIFESTS.get(frozen_dir.name, "frozen.json")


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


def _freeze_one(src: Path, dst: Path, rel: str, *, caches: bool = False) -> FrozenFile:
    try:
        st = src.lstat()
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(src)
            os.symlink(target, dst)
            return FrozenFile(path=rel, kind="symlink", target=target)
        if not stat.S_ISREG(st.st_mode):
            return FrozenFile(path=rel, kind="special", reason=stat.filemode(st.st_mode))
        head = _head(src)
        suffix = Path(rel).suffix.lower()
        small_array = suffix in ARRAY_SUFFIXES and st.st_size <= MAX_ARRAY_BYTES
        if small_array and not rel.startswith(f"{MODEL_DIR}/"):
            entry = _copy(src, dst, rel)
        elif suffix in WEIGHT_SUFFIXES or _weights_header(head, st.st_size):
            entry = FrozenFile(path=rel, kind="listed", size=st.st_size, reason="weights or pickle")
        elif caches and st.st_size > LARGE_BINARY and tool_cache(rel):
            return FrozenFile(path=rel, kind="listed", size=st.st_size, reason="tool cache")
        else:
            entry = _copy(src, dst, rel)
        if not caches and (suffix in PICKLE_SUFFIXES or pickles.sniff(head)):
            _read_imports(src, entry, claimed=suffix in PICKLE_SUFFIXES)
        return entry
    except OSError as exc:
        return FrozenFile(path=rel, kind="unreadable", reason=exc.strerror or str(exc))


def _head(src: Path) -> bytes:
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read(128)


def _weights_header(head: bytes, size: int) -> bool:
    """A safetensors file (a little-endian header length, then its JSON), a GGUF file, or a
    torch zip archive (its first member is `<name>/data.pkl`)."""
    if head.startswith(b"GGUF"):
        return True
    if head.startswith(b"PK\x03\x04") and len(head) >= 30:
        name_len = int.from_bytes(head[26:28], "little")
        return head[30 : 30 + name_len].endswith(b"data.pkl")
    if len(head) < 10:
        return False
    length = int.from_bytes(head[:8], "little")
    return 0 < length < size and head[8:10] in (b'{"', b"{ ")


def tool_cache(rel: str) -> bool:
    """Whether a path of HOME or /tmp is in an installer's or compiler's cache."""
    padded = f"/{rel}"
    if any(part.startswith(_TOOL_PREFIXES) for part in rel.split("/")[:-1]):
        return True
    return any(f"/{folder}/" in padded for folder in TOOL_CACHES) or "site-packages" in rel


def _read_imports(src: Path, entry: FrozenFile, *, claimed: bool) -> None:
    """The globals a pickle of the workspace would import (read by opcode, never loaded). A file
    only sniffed as one (no pickle suffix, no PROTO opcode or zip header: text that starts like
    protocol 0) counts only when it parses whole; a zip without a pickle in it is no pickle."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        found = pickles.read_imports(f)
    if found.pickles == 0 and not claimed:
        return
    if found.error and not claimed and not pickles.sniff_strong(_head(src)):
        return
    entry.imports, entry.imports_error = found.globals, found.error


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
