"""The user's own agent files (`--agent-dir DIR`): checked, snapshotted into the run, shown to the
sandbox read-only.

At run creation DIR is copied into the run folder (`agent/files/`), so the run holds the exact code
that ran (a resume, a bundle or a later reader sees it even if the originals change), and its
content hash is fixed in the spec (`agent_dir_sha256`: paths, executable bits, link targets and
file contents). The agent never sees the originals: isolating sandboxes mount the snapshot
read-only at /agent; under `host` (which isolates nothing) the snapshot's files are made
read-only and $PTB_AGENT_DIR names the snapshot. The command still runs in the workspace, so
final_model/, timer.sh and evaluate.py are where every agent finds them.

The command's script is checked before the run folder exists: the first argument that is a file
(after an interpreter such as python or bash), or the program itself when it is a path, must be
where the sandbox will see it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from posttrainbench.errors import ConfigError
from posttrainbench.evaluate.data import sha256_file
from posttrainbench.records import RunSpec
from posttrainbench.results.layout import RunPaths
from posttrainbench.sandbox.base import Mount

GUEST_AGENT_DIR = PurePosixPath("/agent")
ENV_VAR = "PTB_AGENT_DIR"
MAX_FILES = 20_000
MAX_BYTES = 2 * 2**30
# Files the harness puts in the workspace before the agent starts: a command may run them.
WORKSPACE_FILES = ("evaluate.py", "timer.sh", "prompt.md", "data", "templates", "eval_data")
_INTERPRETER = re.compile(r"(python[0-9.]*|bash|sh|zsh|dash|node|nodejs|ruby|perl|Rscript|julia)")
_NO_SCRIPT = {"-c", "-m", "-e", "--eval", "-"}  # code given inline, or a module: no file to check
_TAKES_VALUE = {"-W", "-X", "-O", "--require", "-r", "-I"}
_PREFIXES = {"exec", "env", "time", "nice", "nohup", "stdbuf"}
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")
_AGENT_DIR_REF = re.compile(r"^(?:\$\{?PTB_AGENT_DIR\}?|/agent)(?:/(?P<rel>.*))?$")
EXAMPLE = "--agent-dir ./my_agent --agent-cmd 'python /agent/my_agent.py'"


class AgentDirError(ConfigError):
    """--agent-dir names no usable folder, or its script is not where the sandbox will look."""


def _entries(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry below root, depth first in name order, with its root-relative posix path."""
    stack = [(root, "")]
    while stack:
        folder, prefix = stack.pop()
        with os.scandir(folder) as it:
            found = sorted(it, key=lambda e: e.name)
        subdirs = []
        for entry in found:
            rel = f"{prefix}{entry.name}"
            yield rel, entry
            if entry.is_dir(follow_symlinks=False):
                subdirs.append((Path(entry.path), rel + "/"))
        stack.extend(reversed(subdirs))


def digest(root: Path) -> str:
    """The content hash of a folder: names, kinds, executable bits, link targets, file bytes.
    Refuses FIFOs, sockets and devices, and folders over MAX_FILES files or MAX_BYTES."""
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise AgentDirError(f"--agent-dir {root} {what}", "pass the folder that holds your agent")
    h = hashlib.sha256()
    files = size = 0
    for rel, entry in _entries(root):
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            h.update(f"l\0{rel}\0{os.readlink(entry.path)}\n".encode())
        elif stat.S_ISDIR(st.st_mode):
            h.update(f"d\0{rel}\n".encode())
        elif stat.S_ISREG(st.st_mode):
            files, size = files + 1, size + st.st_size
            if files > MAX_FILES or size > MAX_BYTES:
                raise AgentDirError(
                    f"--agent-dir {root} holds over {MAX_FILES:,} files or "
                    f"{MAX_BYTES // 2**30} GiB",
                    "keep your agent's code there; let the agent fetch models and data itself",
                )
            x = "x" if st.st_mode & stat.S_IXUSR else "-"
            h.update(f"f\0{rel}\0{x}\0{sha256_file(Path(entry.path))}\n".encode())
        else:
            raise AgentDirError(
                f"--agent-dir {root}: {rel} is not a file, folder or link",
                "remove FIFOs, sockets and devices from the agent's folder",
            )
    return h.hexdigest()


def resolve(folder: str) -> tuple[str, str]:
    """The folder as an absolute path, and its content hash."""
    root = Path(folder).expanduser().resolve()
    return str(root), digest(root)


def pin(spec: RunSpec, takes_agent_dir: bool) -> RunSpec:
    """The spec with its agent folder absolute and its content hash fixed; refuses a folder that
    changed since the hash was taken (e.g. between a sweep's expansion and its run folders)."""
    if spec.agent_dir is None:
        return spec
    if not takes_agent_dir:
        raise AgentDirError(
            f"--agent-dir is for --agent command, not {spec.agent!r}",
            "drop --agent-dir, or run your own agent with --agent command",
        )
    root, found = resolve(spec.agent_dir)
    if spec.agent_dir_sha256 not in (None, found):
        raise AgentDirError(
            f"--agent-dir {root} changed while the run was being set up",
            "leave the agent's files alone until `ptb run` says the run started, then retry",
        )
    return spec.model_copy(update={"agent_dir": root, "agent_dir_sha256": found})


def snapshot(spec: RunSpec, paths: RunPaths) -> None:
    """Copy the spec's agent folder into the run (agent/files/), verified against its hash, its
    files made read-only. Run before run.json is written: a failure leaves no run."""
    if spec.agent_dir is None:
        return
    dest = paths.agent_files
    shutil.copytree(spec.agent_dir, dest, symlinks=True)
    if digest(dest) != spec.agent_dir_sha256:
        raise AgentDirError(
            f"--agent-dir {spec.agent_dir} changed while it was being copied into the run",
            "leave the agent's files alone until `ptb run` says the run started, then retry",
        )
    for _, entry in _entries(dest):
        if entry.is_file(follow_symlinks=False):
            mode = entry.stat(follow_symlinks=False).st_mode
            os.chmod(entry.path, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def mounts(spec: RunSpec, paths: RunPaths) -> list[Mount]:
    """The snapshot, read-only at /agent (for isolating sandboxes)."""
    return [Mount(paths.agent_files, GUEST_AGENT_DIR)] if spec.agent_dir else []


def env(spec: RunSpec, paths: RunPaths, isolating: bool) -> dict[str, str]:
    if spec.agent_dir is None:
        return {}
    return {ENV_VAR: str(GUEST_AGENT_DIR) if isolating else str(paths.agent_files)}


def script_of(command: str) -> tuple[str, bool] | None:
    """The file the command's first simple command runs, and whether it is run directly (as the
    program) rather than by an interpreter; None when there is none to check."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: bash will say so in the agent's stderr
        return None
    words: list[str] = []
    for token in tokens:
        if token and all(c in "();<>|&" for c in token):
            break
        words.append(token)
    while words and (words[0] in _PREFIXES or _ASSIGNMENT.fullmatch(words[0])):
        words.pop(0)
    if not words:
        return None
    program, args = words[0], words[1:]
    if not _INTERPRETER.fullmatch(PurePosixPath(program).name):
        return (program, True) if "/" in program else None  # else a program found on PATH
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _NO_SCRIPT:
            return None
        elif arg in _TAKES_VALUE:
            skip = True
        elif not arg.startswith("-"):
            return arg, False
    return None


def check_command(spec: RunSpec, isolating: bool) -> None:
    """Refuse a command whose script the sandbox will not find (one line, naming the path)."""
    found = script_of(spec.agent_cmd or "")
    if found is None:
        return
    script, direct = found
    ref = _AGENT_DIR_REF.match(script)
    if ref is not None:
        _check_in_agent_dir(spec, script, ref.group("rel") or "", direct, isolating)
    elif script.startswith("/"):
        if not Path(script).is_file():
            raise AgentDirError(
                f"the agent's command runs {script}, which does not exist",
                f"bring your agent's files with {EXAMPLE}",
            )
    else:
        _check_in_workspace(spec, script)


def _check_in_agent_dir(spec: RunSpec, script: str, rel: str, direct: bool, iso: bool) -> None:
    if spec.agent_dir is None:
        raise AgentDirError(
            f"the agent's command runs {script}, but no --agent-dir was given",
            f"pass the folder that holds it: {EXAMPLE}",
        )
    if script.startswith("/agent") and not iso:
        raise AgentDirError(
            f"the agent's command runs {script}, but /agent exists only in isolating sandboxes "
            f"(not --sandbox {spec.sandbox})",
            f'write "${ENV_VAR}/{rel}" (quoted so that your shell leaves it alone)',
        )
    path = Path(spec.agent_dir, rel)
    if not path.is_file():
        raise AgentDirError(
            f"the agent's command runs {script}, but --agent-dir {spec.agent_dir} has no {rel}",
            "name a file of --agent-dir, relative to it",
        )
    if direct and not os.access(path, os.X_OK):
        raise AgentDirError(
            f"the agent's command runs {script} directly, but {path} is not executable",
            f"chmod +x {path}, or run it with its interpreter (e.g. bash {script})",
        )


def _check_in_workspace(spec: RunSpec, script: str) -> None:
    rel = PurePosixPath(script)
    if rel.parts and rel.parts[0] == ".":
        rel = PurePosixPath(*rel.parts[1:]) if len(rel.parts) > 1 else rel
    if rel.parts and rel.parts[0] in WORKSPACE_FILES:
        return
    where = "the workspace, its working directory"
    if spec.agent_dir is not None and Path(spec.agent_dir, rel).is_file():
        raise AgentDirError(
            f"the agent's command runs {script}, which will not be in {where}",
            f"--agent-dir is shown read-only at /agent: write /agent/{rel} in --agent-cmd",
        )
    raise AgentDirError(
        f"the agent's command runs {script}, which will not be in {where}",
        f"bring your agent's files with {EXAMPLE}",
    )
