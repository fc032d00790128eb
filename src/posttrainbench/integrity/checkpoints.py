"""Checkpoints the agent obtained: model repos in the caches it left, opened without trusting it.

`find_checkpoints` walks the folders the agent could write (its workspace, its HOME, its /tmp),
never following a link, and returns every Hugging Face hub-cache model snapshot there
(`models--OWNER--NAME/snapshots/REV` with a config.json and safetensors weights: what `hf download`
or `from_pretrained` leave) and every checkpoint folder (config.json + *.safetensors) under a
`.cache` folder. The agent's own training outputs elsewhere are not listed: a run may submit its own
checkpoint. `opened` makes one readable by the weight comparison: each file is reached by resolving
the links of the hub layout (snapshot files link to ../../blobs) only while they stay inside the
folder walked, then opened with `frozen.open_inside` (no link followed on the way, regular files
only), and presented through links to the open descriptors, so what is read is what was checked.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from posttrainbench.integrity.frozen import open_inside

HUB_PREFIX = "models--"
MAX_ENTRIES = 500_000  # directory entries walked per root before giving up (listed as a problem)
MAX_LINK_HOPS = 16


@dataclass(frozen=True)
class FoundCheckpoint:
    name: str  # the hub repo id, or where the folder is
    root: Path  # the folder walked (live workspace, HOME or /tmp of the run)
    rel: str  # the checkpoint folder, relative to root
    where: str  # the folder as evidence shows it: "<label>/<rel>"


def find_checkpoints(roots: dict[str, Path]) -> tuple[list[FoundCheckpoint], list[str]]:
    """Checkpoints under each labelled root, and the problems that kept part of a root unread."""
    found: list[FoundCheckpoint] = []
    problems: list[str] = []
    for label, root in roots.items():
        if not root.is_dir() or root.is_symlink():
            continue
        seen = 0
        for dirpath, dirs, names in os.walk(root, followlinks=False):
            seen += len(dirs) + len(names)
            if seen > MAX_ENTRIES:
                problems.append(f"{label}: over {MAX_ENTRIES} entries, the rest not searched")
                break
            here = Path(dirpath)
            rel = here.relative_to(root).as_posix()
            dirs[:] = sorted(d for d in dirs if not (here / d).is_symlink())
            name = _checkpoint_name(PurePosixPath(rel), names)
            if name:
                found.append(FoundCheckpoint(name, root, rel, f"{label}/{rel}"))
    return found, problems


def _checkpoint_name(rel: PurePosixPath, names: list[str]) -> str | None:
    if "config.json" not in names or not any(n.endswith(".safetensors") for n in names):
        return None
    parts = rel.parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith(HUB_PREFIX):
        return parts[-3][len(HUB_PREFIX) :].replace("--", "/", 1)
    if ".cache" in parts:
        return rel.as_posix()
    return None


def resolve_inside(root: Path, rel: str) -> str:
    """`rel` with its links resolved, each relative and never leaving `root`; OSError otherwise."""
    todo = list(PurePosixPath(rel).parts)
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                raise OSError(errno.EXDEV, "a link leaves the folder", rel)
            done.pop()
            continue
        here = root.joinpath(*done, part)
        if stat.S_ISLNK(os.lstat(here).st_mode):
            hops += 1
            target = os.readlink(here)
            if hops > MAX_LINK_HOPS or os.path.isabs(target):
                raise OSError(errno.EXDEV, "a link leaves the folder", rel)
            todo = list(PurePosixPath(target).parts) + todo
            continue
        done.append(part)
    return "/".join(done)


@contextlib.contextmanager
def opened(found: FoundCheckpoint) -> Iterator[Path]:
    """A private folder whose safetensors (and index) are the checkpoint's, each a link to a
    descriptor this process holds open until the block ends; OSError if any cannot be opened."""
    folder = found.root / found.rel
    names = sorted(
        n
        for n in os.listdir(folder)
        if n.endswith(".safetensors") or n == "model.safetensors.index.json"
    )
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="ptb-alt-") as tmp:
        out = Path(tmp)
        for name in names:
            real = resolve_inside(found.root, f"{found.rel}/{name}")
            handle = stack.enter_context(open_inside(found.root, real))
            if name.endswith(".json"):
                (out / name).write_bytes(handle.read(1 << 24))
            else:
                (out / name).symlink_to(f"/proc/self/fd/{handle.fileno()}")
        yield out


def repo_config(folder: Path) -> dict[str, object]:
    """The config.json of a harness-side model folder, or {} when unreadable."""
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
