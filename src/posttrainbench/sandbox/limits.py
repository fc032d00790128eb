"""Resource limits of a sandboxed agent, applied in the child before it executes the sandbox.

- rlimits: processes (RLIMIT_NPROC), open files (RLIMIT_NOFILE) and the largest file it may
  write (RLIMIT_FSIZE), inherited by everything the agent starts;
- `oom_score_adj` 1000: under memory pressure the kernel kills the agent, not the harness;
- memory and process count of the whole sandbox through a cgroup, where one is writable (cgroup
  v2 with the memory controller, or v1 `memory` + `pids` hierarchies; usually only as root).
  Where none is, the memory limit is reported as not enforced (`Applied.enforced`).
The workspace's total size is watched by the monitor (`sandbox/monitor.py`), not here.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from posttrainbench.sandbox.base import Limits

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass
class Applied:
    enforced: list[str] = field(default_factory=list)
    not_enforced: list[str] = field(default_factory=list)
    cgroups: list[Path] = field(default_factory=list)


def _v2_root() -> Path | None:
    for root in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        controllers = root / "cgroup.controllers"
        with contextlib.suppress(OSError):
            if "memory" in controllers.read_text().split() and os.access(root, os.W_OK):
                return root
    return None


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


def make_cgroups(name: str, limits: Limits) -> list[Path]:
    """Create the run's cgroups with the limits set; [] where no cgroup can be had."""
    if limits.memory_bytes is None and limits.processes is None:
        return []
    v2 = _v2_root()
    if v2 is not None:
        group = v2 / "ptb" / name
        with contextlib.suppress(OSError):
            group.mkdir(parents=True, exist_ok=True)
            _write(v2 / "ptb" / "cgroup.subtree_control", "+memory +pids")
            ok = limits.memory_bytes is None or _write(
                group / "memory.max", str(limits.memory_bytes)
            )
            if limits.processes is not None:
                _write(group / "pids.max", str(limits.processes))
            _write(group / "memory.swap.max", "0")
            if ok:
                return [group]
    groups = []
    for controller, value, files in (
        ("memory", limits.memory_bytes, ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")),
        ("pids", limits.processes, ("pids.max",)),
    ):
        root = CGROUP_ROOT / controller
        if value is None or not os.access(root, os.W_OK):
            continue
        group = root / "ptb" / name
        with contextlib.suppress(OSError):
            group.mkdir(parents=True, exist_ok=True)
            if _write(group / files[0], str(value)):
                for extra in files[1:]:  # swap accounting may be off: best effort
                    _write(group / extra, str(value))
                groups.append(group)
    return groups


def remove_cgroups(groups: list[Path]) -> None:
    for group in groups:
        with contextlib.suppress(OSError):
            group.rmdir()


def applied(limits: Limits, groups: list[Path]) -> Applied:
    result = Applied(cgroups=groups)
    has_memory = any("memory" in g.parts or (g / "memory.max").exists() for g in groups)
    for name, value, enforced in (
        ("memory", limits.memory_bytes, has_memory),
        ("processes", limits.processes, True),
        ("open_files", limits.open_files, True),
        ("file_bytes", limits.file_bytes, True),
    ):
        if value is not None:
            (result.enforced if enforced else result.not_enforced).append(name)
    return result


def preexec(limits: Limits, groups: list[Path]) -> Callable[[], None]:
    """A preexec_fn: join the cgroups, set the rlimits, volunteer for the OOM killer."""
    procs = [g / "cgroup.procs" for g in groups]

    def apply() -> None:
        pid = str(os.getpid())
        for path in procs:
            with contextlib.suppress(OSError):
                path.write_text(pid)
        for rlimit, value in (
            (resource.RLIMIT_NPROC, limits.processes),
            (resource.RLIMIT_NOFILE, limits.open_files),
            (resource.RLIMIT_FSIZE, limits.file_bytes),
        ):
            if value is not None:
                try:
                    resource.setrlimit(rlimit, (value, value))
                except (ValueError, OSError):  # above what this system allows: its hard limit
                    hard = resource.getrlimit(rlimit)[1]
                    with contextlib.suppress(ValueError, OSError):
                        resource.setrlimit(rlimit, (min(value, hard), min(value, hard)))
        with contextlib.suppress(OSError):
            Path("/proc/self/oom_score_adj").write_text("1000")

    return apply
