"""Copies the agent's final_model out of its workspace: the one way a model leaves the sandbox.

Accepted: the regular files of final_model/ (sub-folders included) named like a model's parts,
*.safetensors weights and the .json/.jinja/.txt/.model/.tiktoken files of configs and tokenizers.
Symlinks that resolve inside the workspace are followed (final_model -> checkpoints/step-500, a
Hugging Face cache snapshot of links to ../../blobs/<sha>); the copy holds plain files only.

Left behind and listed in `skipped` with a reason, never opened for reading: pickle files (.bin
.pt .pth .pkl …, e.g. a Trainer's training_args.bin or optimizer.pt), other files (README.md,
train.py), *.safetensors in sub-folders (outside the weight set), fifos, sockets, device nodes,
broken links, unreadable files, link cycles and folders deeper than MAX_DEPTH.

Refused, the whole model, with a one-line reason: a symlink that points outside the workspace; no
config.json or no *.safetensors weights (e.g. only pytorch_model.bin); not exactly one weight set
(`weight_set`: model.safetensors, or the index and exactly the shards it names; the reason says
what else is there), which is recorded in `weights`; a top-level config.json or
*.safetensors that is not a readable regular file; more files or bytes than the bounds (sizes
from lstat, before anything is read) or more entries than the walk's cap; a file that changed
between check and copy. "missing": there is no final_model at all.

Threat model: the agent is hostile but no longer running when collect runs. Nothing relies on it
being stopped: each file is re-opened from a descriptor of the workspace root one component at a
time with O_NOFOLLOW, checked with fstat (regular, the size that was checked) and copied from that
descriptor, never more bytes than were checked. The copy is built in a temporary sibling of `dest`
and renamed into place, so `dest` is the complete new copy or absent. Nothing the agent left makes
this raise; errors writing `dest` (the harness's own disk) do.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from posttrainbench.records import CollectedFile, CollectOutcome, SkippedFile
from posttrainbench.workspace.weight_set import WeightSetError, is_weights, weight_set

ALLOWED_SUFFIXES = frozenset({".safetensors", ".json", ".jinja", ".txt", ".model", ".tiktoken"})
PICKLE_SUFFIXES = frozenset(
    {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz", ".joblib"}
)
PICKLE_REASON = "pickle file: never loaded"
NESTED_WEIGHTS_REASON = "weights in a sub-folder: outside the model's weight set, never loaded"
MAX_DEPTH = 16  # folders below final_model
MIN_ENTRY_CAP = 10_000  # the walk stops after max(10 * max_files, MIN_ENTRY_CAP) entries
CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class _Refused(Exception):
    """The whole model is refused; the message is the reason."""


class _Unreadable(Exception):
    """A checked file could not be opened or read: skipped, or refused when required."""


@dataclass(frozen=True)
class _Keep:
    path: str  # where it is in final_model (and will be in dest)
    real: tuple[str, ...]  # components of its real path below the workspace root
    size: int


def collect_final_model(
    src: Path, dest: Path, *, workspace: Path, max_bytes: int, max_files: int
) -> CollectOutcome:
    """Copy the loadable parts of `src` (<workspace>/final_model) to `dest`; never raises for
    anything the agent left."""
    skipped: list[SkippedFile] = []
    ws = Path(os.path.realpath(workspace))
    try:
        keep = _plan(src, ws, max_bytes, max_files, skipped)
        if keep is None:
            _remove(dest)
            return CollectOutcome(status="missing", reason="the agent left no final_model/ folder")
        files, weights = _copy(keep, ws, dest, skipped)
    except _Refused as refusal:
        _remove(dest)
        return CollectOutcome(status="refused", reason=str(refusal), skipped=_by_path(skipped))
    return CollectOutcome(
        status="collected",
        files=files,
        weights=weights,
        skipped=_by_path(skipped),
        total_bytes=sum(f.bytes for f in files),
    )


# --- checking: lstat only, nothing is opened for reading -------------------------------------


def _plan(
    src: Path, ws: Path, max_bytes: int, max_files: int, skipped: list[SkippedFile]
) -> list[_Keep] | None:
    """What to copy, sorted by path; None when there is no final_model."""
    found = _root(src, ws)
    if found is None:
        return None
    root, root_st = found
    cap = max(10 * max_files, MIN_ENTRY_CAP)
    keep = sorted(_walk(root, root_st, ws, cap, skipped), key=lambda k: k.path)
    names = {k.path for k in keep}
    if "config.json" not in names:
        raise _Refused("final_model has no config.json")
    if not any(_is_weights(n) for n in names):
        pickles = sorted(s.path for s in skipped if s.reason == PICKLE_REASON)
        if pickles:
            raise _Refused(
                "final_model has no *.safetensors weights, only pickle files, which are never "
                f"loaded: {', '.join(pickles[:5])}"
            )
        raise _Refused("final_model has no *.safetensors weights")
    if len(keep) > max_files:
        raise _Refused(
            f"final_model holds {len(keep)} model files, more than the bound of {max_files}; "
            "raise it with PTB_COLLECT_MAX_FILES"
        )
    total = sum(k.size for k in keep)
    if total > max_bytes:
        raise _Refused(
            f"final_model holds {total / 2**30:.2f} GB ({total} bytes), more than the bound of "
            f"{max_bytes / 2**30:.2f} GB; raise it with PTB_COLLECT_MAX_GB"
        )
    return keep


def _root(src: Path, ws: Path) -> tuple[Path, os.stat_result] | None:
    here = Path(os.path.realpath(src.parent)) / src.name
    try:
        st = os.lstat(here)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise _Refused(f"final_model cannot be examined: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        here = _link_target(here, "final_model", ws)
        try:
            st = os.stat(here)
        except OSError as e:
            raise _Refused(f"final_model is a broken symlink ({e.strerror})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise _Refused(f"final_model is {_kind(st.st_mode)}, not a directory")
    if not here.is_relative_to(ws):
        raise _Refused("final_model is outside the workspace")
    return here, st


def _walk(
    root: Path, root_st: os.stat_result, ws: Path, cap: int, skipped: list[SkippedFile]
) -> list[_Keep]:
    keep: list[_Keep] = []
    seen = {(root_st.st_dev, root_st.st_ino)}
    stack: list[tuple[str, Path, int]] = [("", root, 0)]
    entries = 0
    while stack:
        prefix, folder, depth = stack.pop()
        names: list[str] = []
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    entries += 1
                    if entries > cap:
                        raise _Refused(f"final_model has more than {cap} entries")
                    names.append(entry.name)
        except OSError as e:
            if not prefix:
                raise _Refused(f"final_model cannot be listed: {e.strerror}") from None
            skipped.append(SkippedFile(path=prefix[:-1], reason=f"unlistable ({e.strerror})"))
            continue
        for name in sorted(names):
            rel, path = prefix + name, folder / name
            try:
                st = os.lstat(path)
            except OSError as e:
                _unusable(rel, f"unreadable ({e.strerror})", skipped)
                continue
            if stat.S_ISLNK(st.st_mode):
                path = _link_target(path, rel, ws)
                try:
                    st = os.stat(path)  # realpath resolved every link, unless they loop
                except OSError as e:
                    _unusable(rel, f"a broken symlink ({e.strerror})", skipped)
                    continue
            if stat.S_ISDIR(st.st_mode):
                if _required(rel):
                    raise _Refused(f"{rel} is a directory, not a regular file")
                if (st.st_dev, st.st_ino) in seen:
                    skipped.append(SkippedFile(path=rel, reason="a folder already visited (cycle)"))
                elif depth >= MAX_DEPTH:
                    reason = f"a folder more than {MAX_DEPTH} levels deep"
                    skipped.append(SkippedFile(path=rel, reason=reason))
                else:
                    seen.add((st.st_dev, st.st_ino))
                    stack.append((rel + "/", path, depth + 1))
            elif not stat.S_ISREG(st.st_mode):
                _unusable(rel, f"{_kind(st.st_mode)}, not a regular file", skipped)
            else:
                suffix = PurePosixPath(rel).suffix.lower()
                if suffix == ".safetensors" and "/" in rel:
                    skipped.append(SkippedFile(path=rel, reason=NESTED_WEIGHTS_REASON))
                elif suffix in PICKLE_SUFFIXES:
                    skipped.append(SkippedFile(path=rel, reason=PICKLE_REASON))
                elif suffix not in ALLOWED_SUFFIXES:
                    skipped.append(SkippedFile(path=rel, reason="not a model file"))
                else:
                    keep.append(_Keep(rel, path.relative_to(ws).parts, st.st_size))
    return keep


def _link_target(link: Path, rel: str, ws: Path) -> Path:
    real = Path(os.path.realpath(link))
    if not real.is_relative_to(ws):
        try:
            target = os.readlink(link)
        except OSError:
            target = str(real)
        raise _Refused(f"{rel} is a symlink to {target}, which points outside the workspace")
    return real


# --- copying: from descriptors opened without following links --------------------------------


def _copy(
    keep: list[_Keep], ws: Path, dest: Path, skipped: list[SkippedFile]
) -> tuple[list[CollectedFile], list[str]]:
    """The copy's files and its weight set, checked on the copy (harness-owned, still
    unpublished) so that nothing the agent changes later decides what the set is."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        try:
            ws_fd = os.open(ws, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise _Refused(f"the workspace cannot be opened: {e.strerror}") from None
        files: list[CollectedFile] = []
        try:
            for item in keep:
                try:
                    files.append(_copy_one(ws_fd, item, tmp))
                except _Unreadable as e:
                    _unusable(item.path, f"unreadable ({e})", skipped)
        finally:
            os.close(ws_fd)
        if not any(_is_weights(f.path) for f in files):
            raise _Refused("final_model has no readable *.safetensors weights")
        try:
            weights = weight_set(tmp)
        except WeightSetError as e:
            raise _Refused(str(e)) from None
        for folder, _, _ in os.walk(tmp):
            os.chmod(folder, 0o755)
        _remove(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return files, weights


def _copy_one(ws_fd: int, item: _Keep, tmp: Path) -> CollectedFile:
    changed = f"{item.path} changed while being collected"
    fd = _open_below(ws_fd, item.real, changed)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != item.size:
            raise _Refused(changed)
        target = tmp / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        os.fchmod(out, 0o644)
        with open(out, "wb") as sink:
            left = item.size
            while left:
                try:
                    chunk = os.read(fd, min(CHUNK, left))
                except OSError as e:
                    target.unlink()
                    raise _Unreadable(e.strerror) from None
                if not chunk:
                    raise _Refused(changed)
                digest.update(chunk)
                sink.write(chunk)
                left -= len(chunk)
    finally:
        os.close(fd)
    return CollectedFile(path=item.path, bytes=item.size, sha256=digest.hexdigest())


def _open_below(ws_fd: int, parts: tuple[str, ...], changed: str) -> int:
    """Open workspace/<parts> read-only, refusing to follow a link at any component."""
    fd = ws_fd
    try:
        for i, part in enumerate(parts):
            flags = _FILE_FLAGS if i == len(parts) - 1 else _DIR_FLAGS
            parent, fd = fd, os.open(part, flags, dir_fd=fd)
            if parent != ws_fd:
                os.close(parent)
    except OSError as e:
        if fd != ws_fd:
            os.close(fd)
        if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):  # a link or a gap now
            raise _Refused(f"{changed} ({e.strerror})") from None
        raise _Unreadable(e.strerror) from None
    return fd


# --- small helpers ----------------------------------------------------------------------------


def _required(rel: str) -> bool:
    return rel == "config.json" or ("/" not in rel and _is_weights(rel))


def _is_weights(rel: str) -> bool:
    return is_weights(rel)


def _unusable(rel: str, what: str, skipped: list[SkippedFile]) -> None:
    """Skip an entry that cannot be collected; refuse the model if it is a required file."""
    if _required(rel):
        raise _Refused(f"{rel} is {what}")
    skipped.append(SkippedFile(path=rel, reason=what))


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISLNK(mode):
        return "a symlink"
    return "a special file"


def _by_path(skipped: list[SkippedFile]) -> list[SkippedFile]:
    return sorted(skipped, key=lambda s: s.path)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def verify_copy(dest: Path, outcome: CollectOutcome) -> list[str]:
    """Files of the collected copy that differ from what collect recorded (changed, missing or
    added); empty when the copy is exactly what was collected."""
    expected = {f.path: f.sha256 for f in outcome.files}
    actual: dict[str, str | None] = {}
    for dirpath, _dirs, names in os.walk(dest):
        for name in names:
            path = Path(dirpath) / name
            try:
                fd = os.open(path, _FILE_FLAGS)
                with os.fdopen(fd, "rb") as f:
                    digest: str | None = hashlib.file_digest(f, "sha256").hexdigest()
            except OSError:
                digest = None
            actual[path.relative_to(dest).as_posix()] = digest
    return sorted(p for p in expected.keys() | actual.keys() if expected.get(p) != actual.get(p))
