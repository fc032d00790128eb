"""GPU preflight: before an agent's budget starts, check every GPU the run was given.

Each requested GPU must be listed by `nvidia-smi`, be of an accepted class (a case-insensitive
part of its name; `PTB_GPU_CLASSES`), be idle (no compute process, little memory in use, low
utilisation), and take a 256 MiB allocation that a subprocess writes and reads back with torch.
The first failure raises `GpuPreflightError` (an `InfrastructureError`) naming the GPU and why;
success returns a `GpuPreflight` record for run.json.

Every command goes through a `Runner`, so tests feed fake `nvidia-smi` output and fake probes.
The probe addresses a GPU by UUID: nvidia-smi indices follow PCI bus order, CUDA's default order
may not.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import Field

from posttrainbench.errors import ConfigError, InfrastructureError
from posttrainbench.records import GpuCheck, GpuPreflight, GpuProcess, Record

DEFAULT_CLASSES: tuple[str, ...] = ("H100", "H200", "A100", "B200")
CLASSES_ENV = "PTB_GPU_CLASSES"
ANY_CLASS = "any"
MAX_USED_MIB = 1024
MAX_UTIL_PCT = 10
PROBE_MIB = 256
SMI_TIMEOUT_S = 20.0
PROBE_TIMEOUT_S = 120.0

GPU_QUERY = "index,uuid,name,memory.total,memory.used,utilization.gpu"
APPS_QUERY = "gpu_uuid,pid,used_memory"
CSV_FORMAT = "--format=csv,noheader,nounits"

# Runs in a fresh interpreter that sees exactly one GPU; prints one JSON line on success.
PROBE_SCRIPT = """
import json, sys
try:
    import torch
except Exception as exc:
    sys.exit(f"torch is not importable: {exc}")
if not torch.cuda.is_available():
    sys.exit(f"CUDA not available to torch {torch.__version__}")
if torch.cuda.device_count() != 1:
    sys.exit(f"expected 1 visible CUDA device, got {torch.cuda.device_count()}")
n = int(sys.argv[1]) * 2**20 // 4
x = torch.arange(n, device="cuda", dtype=torch.int32)
x.mul_(3)
torch.cuda.synchronize()
if not torch.equal(x.cpu(), torch.arange(n, dtype=torch.int32) * 3):
    sys.exit("the values read back differ from those written")
print(json.dumps({"device": torch.cuda.get_device_name(0), "torch": torch.__version__}))
"""


class Completed(Record):
    """What a command left: its exit status and output."""

    returncode: int
    stdout: str = ""
    stderr: str = ""

    def first_line(self) -> str:
        """The first non-empty line of stdout, else of stderr."""
        for text in (self.stdout, self.stderr):
            for line in text.splitlines():
                if line.strip():
                    return line.strip()
        return ""

    def last_error_line(self) -> str:
        """The last non-empty line of stderr, else of stdout: where a traceback says why."""
        for text in (self.stderr, self.stdout):
            lines = [line.strip() for line in text.splitlines() if line.strip()]
            if lines:
                return lines[-1]
        return f"exit status {self.returncode}"


class Runner(Protocol):
    """Runs argv; raises FileNotFoundError if argv[0] is missing, TimeoutExpired past timeout."""

    def __call__(
        self, argv: list[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> Completed: ...


def run_command(
    argv: list[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> Completed:
    done = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        env=dict(env) if env is not None else None,
    )
    return Completed(returncode=done.returncode, stdout=done.stdout, stderr=done.stderr)


class GpuInfo(Record):
    """One row of `nvidia-smi --query-gpu`. Numbers nvidia-smi reports as [N/A] are None."""

    index: int
    uuid: str
    name: str
    memory_total_mib: int | None
    memory_used_mib: int | None
    utilization_pct: int | None

    @property
    def label(self) -> str:
        return f"GPU {self.index} ({self.name})"


class GpuPreflightError(InfrastructureError):
    """A requested GPU failed the preflight; `result` holds every check for run.json."""

    def __init__(self, message: str, hint: str | None, result: GpuPreflight) -> None:
        super().__init__(message, hint)
        self.result = result


GPUS_VAR = "PTB_GPUS"  # set by a sweep executor: the GPUs of a run whose spec names none


def parse_gpu_list(
    text: str | None, *, nvidia_smi: str = "nvidia-smi", run: Runner = run_command
) -> list[int]:
    """`--gpus` → nvidia-smi indices: None, "" or "none" → [], "0,1" or "0-3" → those, "all" →
    every GPU nvidia-smi lists (an error if it lists none)."""
    spec = (text or "").strip().lower()
    if spec in ("", "none"):
        return []
    if spec == "all":
        found = [g.index for g in query_gpus(nvidia_smi, run=run)]
        if not found:
            raise InfrastructureError(
                "--gpus all: nvidia-smi lists no GPU",
                "run without --gpus on a machine without GPUs",
            )
        return found
    gpus: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise ConfigError(
                f"--gpus {text!r} is not a GPU list", "use e.g. 0,1 or 0-3, 'all' or 'none'"
            )
        gpus.extend(range(int(m[1]), int(m[2] or m[1]) + 1))
    if len(set(gpus)) != len(gpus):
        raise ConfigError(f"--gpus {text!r} names a GPU twice", "list each GPU once, e.g. 0,1")
    return gpus


def require_gpus(
    gpus: Sequence[int],
    what: str = "--gpus",
    instead: str = "run without --gpus",
    *,
    nvidia_smi: str = "nvidia-smi",
    run: Runner = run_command,
) -> None:
    """Refuse, as a configuration error and before anything is created, GPUs this machine does
    not have: none can be listed, or an index nvidia-smi does not list. Whether they are idle
    and work is the preflight's, later."""
    if not gpus:
        return
    shown = ",".join(map(str, gpus))
    try:
        listed = [g.index for g in query_gpus(nvidia_smi, run=run)]
    except InfrastructureError as exc:
        raise ConfigError(
            f"{what} {shown}: no GPU can be used here: {exc.message}",
            f"install the NVIDIA driver (it ships nvidia-smi), or {instead}",
        ) from None
    missing = [g for g in gpus if g not in listed]
    if missing:
        raise ConfigError(
            f"{what} {shown}: this machine has no GPU {','.join(map(str, missing))}",
            f"nvidia-smi lists {','.join(map(str, listed)) or 'none'}",
        )


def _number(field: str, line: str) -> int | None:
    value = field.strip()
    if value.strip("[]").lower() in ("n/a", "not supported", "unknown error", ""):
        return None
    try:
        return round(float(value))
    except ValueError:
        raise InfrastructureError(
            f"unexpected nvidia-smi output: {line.strip()!r}",
            "check that `nvidia-smi` works on this machine",
        ) from None


def _smi(nvidia_smi: str, query: str, run: Runner) -> list[str]:
    argv = [nvidia_smi, query, CSV_FORMAT]
    try:
        done = run(argv, timeout=SMI_TIMEOUT_S)
    except FileNotFoundError:
        raise InfrastructureError(
            f"{nvidia_smi} not found: cannot check the requested GPUs",
            "install the NVIDIA driver (it ships nvidia-smi), or run without --gpus",
        ) from None
    except subprocess.TimeoutExpired:
        raise InfrastructureError(
            f"{nvidia_smi} did not answer within {SMI_TIMEOUT_S:.0f}s",
            "the driver may be hung: check `nvidia-smi` and dmesg for Xid errors",
        ) from None
    except OSError as exc:
        raise InfrastructureError(
            f"cannot run {nvidia_smi}: {exc.strerror or exc}", "check the NVIDIA driver install"
        ) from None
    if done.returncode != 0:
        raise InfrastructureError(
            f"nvidia-smi failed: {done.first_line() or f'exit status {done.returncode}'}",
            "check the NVIDIA driver: `nvidia-smi` should list the GPUs",
        )
    return [line for line in done.stdout.splitlines() if "," in line]


def query_gpus(nvidia_smi: str = "nvidia-smi", *, run: Runner = run_command) -> list[GpuInfo]:
    gpus = []
    for line in _smi(nvidia_smi, f"--query-gpu={GPU_QUERY}", run):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 6 or not parts[0].isdigit():
            raise InfrastructureError(
                f"unexpected nvidia-smi output: {line.strip()!r}",
                "check that `nvidia-smi` works on this machine",
            )
        gpus.append(
            GpuInfo(
                index=int(parts[0]),
                uuid=parts[1],
                name=", ".join(parts[2:-3]),
                memory_total_mib=_number(parts[-3], line),
                memory_used_mib=_number(parts[-2], line),
                utilization_pct=_number(parts[-1], line),
            )
        )
    return gpus


def gpu_processes(nvidia_smi: str = "nvidia-smi", *, run: Runner = run_command) -> list[GpuProcess]:
    procs = []
    for line in _smi(nvidia_smi, f"--query-compute-apps={APPS_QUERY}", run):
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3 or not parts[1].isdigit():
            raise InfrastructureError(
                f"unexpected nvidia-smi output: {line.strip()!r}",
                "check that `nvidia-smi` works on this machine",
            )
        uuid, pid, used = parts
        procs.append(GpuProcess(gpu_uuid=uuid, pid=int(pid), used_memory_mib=_number(used, line)))
    return procs


def visible_gpus(gpus: Iterable[int]) -> dict[str, str]:
    """The CUDA variables that show a process exactly these GPUs, by index in PCI order."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


PROC_GPUS = Path("/proc/driver/nvidia/gpus")
_MINOR = re.compile(r"^Device Minor:\s*(\d+)\s*$", re.MULTILINE)


def device_nodes(
    gpus: Sequence[int],
    *,
    nvidia_smi: str = "nvidia-smi",
    run: Runner = run_command,
    proc: Path = PROC_GPUS,
    dev: Path = Path("/dev"),
) -> list[Path]:
    """The /dev/nvidiaN node of each GPU, by nvidia-smi index.

    N is the driver's minor number, which need not equal the index: a container given GPUs 2 and
    5 of a host sees them as indices 0 and 1 behind /dev/nvidia2 and /dev/nvidia5. The index is
    mapped through the GPU's PCI bus id to the driver's own record of its minor. Raises
    InfrastructureError rather than hand out a node that is missing or not the GPU asked for."""
    if not gpus:
        return []
    buses: dict[int, str] = {}
    for line in _smi(nvidia_smi, "--query-gpu=index,pci.bus_id", run):
        number, _, bus = (p.strip() for p in line.partition(","))
        if not number.isdigit() or not bus:
            raise InfrastructureError(
                f"unexpected nvidia-smi output: {line.strip()!r}",
                "check that `nvidia-smi` works on this machine",
            )
        buses[int(number)] = bus
    nodes = []
    for index in gpus:
        if index not in buses:
            listed = ", ".join(map(str, sorted(buses))) or "none"
            raise InfrastructureError(
                f"GPU {index} is not present (nvidia-smi lists GPUs: {listed})",
                "give the sandbox GPUs this machine has",
            )
        # nvidia-smi writes an 8-digit PCI domain (00000000:3B:00.0); the driver's folder, 4.
        info = proc / buses[index][-12:].lower() / "information"
        try:
            found = _MINOR.search(info.read_text())
        except OSError as exc:
            raise InfrastructureError(
                f"cannot find the device node of GPU {index}: {info}: {exc.strerror or exc}",
                "the NVIDIA kernel driver's /proc entries are needed; or use a container sandbox",
            ) from None
        if found is None:
            raise InfrastructureError(
                f"cannot find the device node of GPU {index}: no 'Device Minor' in {info}",
                "check the NVIDIA driver",
            )
        node = dev / f"nvidia{found[1]}"
        if not node.exists():
            raise InfrastructureError(
                f"GPU {index}'s device node {node} does not exist", "check the NVIDIA driver"
            )
        nodes.append(node)
    return nodes


def accepted_classes(accepted: str | Sequence[str] | None = None) -> tuple[str, ...]:
    """The argument, else `PTB_GPU_CLASSES`, else DEFAULT_CLASSES; `("any",)` accepts every GPU."""
    raw = accepted if accepted is not None else os.environ.get(CLASSES_ENV, "").strip() or None
    if raw is None:
        return DEFAULT_CLASSES
    parts = raw.split(",") if isinstance(raw, str) else list(raw)
    classes = tuple(p.strip() for p in parts if p.strip())
    if not classes:
        raise ConfigError(
            f"GPU classes {raw!r} name no class", f"use e.g. {CLASSES_ENV}=H100,H200 or 'any'"
        )
    return (ANY_CLASS,) if any(c.lower() == ANY_CLASS for c in classes) else classes


@dataclass(frozen=True)
class _Limits:
    classes: tuple[str, ...]
    max_used_mib: int
    max_util_pct: int


@dataclass(frozen=True)
class _Problem:
    reason: str  # completes "GPU 1 (NVIDIA A10G) ..."
    hint: str


def _class(gpu: GpuInfo, procs: list[GpuProcess], limits: _Limits) -> _Problem | None:
    if limits.classes == (ANY_CLASS,) or any(c.lower() in gpu.name.lower() for c in limits.classes):
        return None
    return _Problem(
        f"is not an accepted class ({', '.join(limits.classes)})",
        f"set {CLASSES_ENV}=any (or a comma-separated list of name parts) to accept it",
    )


def _no_processes(gpu: GpuInfo, procs: list[GpuProcess], limits: _Limits) -> _Problem | None:
    if not procs:
        return None
    shown = ", ".join(
        f"pid {p.pid}"
        + (f" using {p.used_memory_mib} MiB" if p.used_memory_mib is not None else "")
        for p in procs[:3]
    )
    more = f" and {len(procs) - 3} more" if len(procs) > 3 else ""
    return _Problem(
        f"is busy: {len(procs)} compute process(es) ({shown}{more})",
        "wait for them to finish, or pick idle GPUs with --gpus",
    )


def _memory(gpu: GpuInfo, procs: list[GpuProcess], limits: _Limits) -> _Problem | None:
    if gpu.memory_used_mib is None or gpu.memory_used_mib < limits.max_used_mib:
        return None
    return _Problem(
        f"is busy: {gpu.memory_used_mib} MiB in use (limit {limits.max_used_mib} MiB)",
        "another process (perhaps in another container) holds its memory; pick idle GPUs",
    )


def _utilisation(gpu: GpuInfo, procs: list[GpuProcess], limits: _Limits) -> _Problem | None:
    if gpu.utilization_pct is None or gpu.utilization_pct < limits.max_util_pct:
        return None
    return _Problem(
        f"is busy: {gpu.utilization_pct}% utilised (limit {limits.max_util_pct}%)",
        "another process (perhaps in another container) is using it; pick idle GPUs",
    )


# Cheap checks, in the order their failures are reported; the probe runs only if all pass.
CHECKS: tuple[Callable[[GpuInfo, list[GpuProcess], _Limits], _Problem | None], ...] = (
    _class,
    _no_processes,
    _memory,
    _utilisation,
)

_PROBE_HINT = "check `nvidia-smi` and dmesg for Xid errors; the GPU may need a reset by an admin"


class ProbeResult(Record):
    """The allocation probe on one GPU."""

    seconds: float
    device: str | None = Field(default=None, description="Device name torch saw.")
    error: str | None = Field(default=None, description="Completes 'GPU 0 (name) ...'.")


def probe_gpu(
    gpu: GpuInfo, *, run: Runner = run_command, timeout_s: float = PROBE_TIMEOUT_S
) -> ProbeResult:
    """Allocate PROBE_MIB on `gpu` in a subprocess, write it and read it back."""
    env = dict(os.environ) | {"CUDA_VISIBLE_DEVICES": gpu.uuid, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    argv = [sys.executable, "-c", PROBE_SCRIPT, str(PROBE_MIB)]
    start = time.monotonic()
    try:
        done = run(argv, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return ProbeResult(
            seconds=round(time.monotonic() - start, 2),
            error=f"allocation probe timed out after {timeout_s:.0f}s",
        )
    took = round(time.monotonic() - start, 2)
    if done.returncode != 0:
        return ProbeResult(
            seconds=took, error=f"failed the allocation probe: {done.last_error_line()}"
        )
    try:
        return ProbeResult(
            seconds=took, device=str(json.loads(done.stdout.strip().splitlines()[-1])["device"])
        )
    except (IndexError, ValueError, KeyError, TypeError):
        return ProbeResult(
            seconds=took,
            error=f"allocation probe gave no result: {done.first_line() or 'no output'!r}",
        )


def preflight(
    gpus: list[int],
    *,
    accepted: str | Sequence[str] | None = None,
    max_used_mib: int = MAX_USED_MIB,
    max_util_pct: int = MAX_UTIL_PCT,
    probe: bool = True,
    probe_timeout_s: float = PROBE_TIMEOUT_S,
    nvidia_smi: str = "nvidia-smi",
    run: Runner = run_command,
) -> GpuPreflight:
    """Check `gpus` (nvidia-smi indices); raise GpuPreflightError on the first failure."""
    start = time.monotonic()
    limits = _Limits(accepted_classes(accepted), max_used_mib, max_util_pct)
    result = GpuPreflight(
        requested=list(gpus),
        accepted_classes=list(limits.classes),
        max_used_mib=max_used_mib,
        max_util_pct=max_util_pct,
        probed=probe,
        passed=True,
    )
    if not gpus:
        result.note = "no GPU requested"
        return result

    found = {g.index: g for g in query_gpus(nvidia_smi, run=run)}
    procs = gpu_processes(nvidia_smi, run=run)
    problems: dict[int, _Problem] = {}
    infos: dict[int, GpuInfo] = {}
    for index in gpus:
        gpu = found.get(index)
        if gpu is None:
            have = ", ".join(map(str, sorted(found))) or "none"
            problems[index] = _Problem(
                f"is not present (nvidia-smi lists GPUs: {have})",
                "pick GPUs that `nvidia-smi -L` lists",
            )
            result.checks.append(GpuCheck(index=index, present=False, passed=False))
            continue
        infos[index] = gpu
        own = [p for p in procs if p.gpu_uuid == gpu.uuid]
        problem = next((p for check in CHECKS if (p := check(gpu, own, limits))), None)
        if problem:
            problems[index] = problem
        result.checks.append(
            GpuCheck(
                present=True,
                processes=own,
                passed=problem is None,
                **gpu.model_dump(),
            )
        )

    if probe and not problems:
        with ThreadPoolExecutor(max_workers=len(gpus)) as pool:
            outcomes = list(
                pool.map(lambda g: probe_gpu(g, run=run, timeout_s=probe_timeout_s), infos.values())
            )
        for check, outcome in zip(result.checks, outcomes, strict=True):
            check.probe_s, check.probe_device = outcome.seconds, outcome.device
            if outcome.error:
                problems[check.index] = _Problem(outcome.error, _PROBE_HINT)
                check.passed = False

    for check in result.checks:
        if check.index in problems:
            check.reason = problems[check.index].reason
    result.passed = not problems
    result.duration_s = round(time.monotonic() - start, 2)
    if problems:
        index, first = next(iter(problems.items()))
        gpu_label = infos[index].label if index in infos else f"GPU {index}"
        others = [i for i in problems if i != index]
        more = f"; GPU {', '.join(map(str, others))} failed too" if others else ""
        raise GpuPreflightError(f"{gpu_label} {first.reason}{more}", first.hint, result)
    return result
