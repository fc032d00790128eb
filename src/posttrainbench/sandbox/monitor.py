"""Resource samples of a running agent, appended to monitor.csv while the solve stage runs.

Each row: wall time, CPU percent and resident memory of the agent's process tree, bytes in its
workspace and in its HOME, and utilisation/memory of the GPUs the agent was given, when
`nvidia-smi` is present.
Sampling never raises into the run: a failed sample is logged and skipped.

The monitor also enforces the workspace's size limit (`--workspace-gb`), which the agent's HOME
(`agent/home`, as writable as the workspace) counts against too: when a sample finds the two
together over it, the agent's process group is killed and `over_limit` says why (RLIMIT_FSIZE
already caps any single file at the same size, so one sample interval bounds the overshoot of
many files).
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

log = logging.getLogger(__name__)
FIELDS = [
    "time", "cpu_percent", "rss_mb", "workspace_mb", "gpu_util_percent", "gpu_mem_mb", "home_mb",
]  # fmt: skip


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def dir_bytes(root: Path) -> int:
    """Bytes of the files under root (their sizes; links counted as links, never followed)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 // 10 else f"{n / 2**20:.1f} MB"


def gpu_sample(gpus: list[int] | None = None) -> tuple[str, str]:
    """('util;util', 'mem;mem') over the given GPUs (all when None), or empty strings without
    nvidia-smi."""
    if not shutil.which("nvidia-smi") or gpus == []:
        return "", ""
    query = "--query-gpu=index,utilization.gpu,memory.used"
    out = subprocess.run(
        ["nvidia-smi", query, "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    rows = [[c.strip() for c in line.split(",")] for line in out.strip().splitlines()]
    rows = [r for r in rows if len(r) == 3 and (gpus is None or r[0] in {str(g) for g in gpus})]
    return ";".join(r[1] for r in rows), ";".join(r[2] for r in rows)


class Monitor:
    def __init__(
        self,
        pid: int,
        workspace: Path,
        out: Path,
        interval_s: float,
        *,
        gpus: list[int] | None = None,
        workspace_limit: int | None = None,
        home: Path | None = None,
        scratch: tuple[Path, ...] = (),
    ) -> None:
        self.pid, self.workspace, self.out, self.interval_s = pid, workspace, out, interval_s
        self.gpus, self.workspace_limit, self.home = gpus, workspace_limit, home
        self.scratch = scratch  # the sandbox's /tmp and /var/tmp, kept on disk: counted as HOME
        self.over_limit: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ptb-monitor", daemon=True)
        self._procs: dict[int, psutil.Process] = {}

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> dict[str, str]:
        cpu = 0.0
        rss = 0
        for proc in _tree(self.pid):
            # Reuse Process objects: cpu_percent() measures since the previous call on the object.
            known = self._procs.setdefault(proc.pid, proc)
            try:
                cpu += known.cpu_percent(None)
                rss += known.memory_info().rss
            except psutil.Error:
                continue
        util, mem = gpu_sample(self.gpus)
        size = dir_bytes(self.workspace)
        home = sum(dir_bytes(p) for p in (self.home, *self.scratch) if p is not None)
        if self.workspace_limit is not None and size + home > self.workspace_limit:
            self._stop_agent(size, home)
        return {
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpu_percent": f"{cpu:.0f}",
            "rss_mb": f"{rss / 2**20:.0f}",
            "workspace_mb": f"{size / 2**20:.1f}",
            "gpu_util_percent": util,
            "gpu_mem_mb": mem,
            "home_mb": f"{home / 2**20:.1f}",
        }

    def _stop_agent(self, size: int, home: int) -> None:
        if self.over_limit is None:
            limit = self.workspace_limit or 0
            self.over_limit = (
                f"workspace over its limit: {_size(size + home)} > {_size(limit)}"
                f" (workspace {_size(size)}, HOME {_size(home)})"
            )
            log.warning("stopping the agent: %s", self.over_limit)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    def _loop(self) -> None:
        new = not self.out.exists()
        with self.out.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIELDS)
            if new:
                writer.writeheader()
            while True:
                start = time.monotonic()
                try:
                    writer.writerow(self.sample())
                    f.flush()
                except Exception as exc:  # a sample is evidence, not a reason to stop a run
                    log.debug("monitor sample failed: %s", exc)
                if self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - start))):
                    break


def last_sample_time(path: Path) -> datetime | None:
    """Time of the last sample in monitor.csv: when the harness last saw the agent."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return datetime.fromisoformat(rows[-1]["time"]) if rows else None
    except (OSError, ValueError, KeyError):
        return None
