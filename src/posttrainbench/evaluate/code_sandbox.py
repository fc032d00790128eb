"""The sandbox that runs model-written code (each call of a HumanEval answer, and its checker).

The reference ran completions in the grader's own process (`sandbox="local"`). Here every
command runs under bubblewrap: no network (a fresh network namespace), its own PID, IPC and UTS
namespaces, the system read-only, the sample's own temporary directory as the only writable
place (plus a private /tmp), no environment but PATH, and rlimits on CPU seconds, address space,
file size, open files and processes; a wall-clock timeout kills the whole sandbox. As root the
code also runs as an unprivileged uid, so the process limit counts only its own processes.

Where bubblewrap is missing or cannot create namespaces, model code is not run at all
(`CodeSandboxUnavailable`, naming the fix) unless the user opts in knowingly with
`PTB_CODE_SANDBOX=rlimits-only`: then it runs as a plain subprocess with the same rlimits and an
environment of PATH and HOME only, and each score records `isolation = "rlimits-only"`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from inspect_ai.util import ExecResult

from posttrainbench.errors import ConfigError
from posttrainbench.sandbox import guest

log = logging.getLogger(__name__)

WORKDIR = "/work"
CPU_S = 30
ADDRESS_SPACE = 2 << 30  # 2 GiB
FILE_SIZE = 64 << 20
OPEN_FILES = 256
PROCESSES = 64  # above what this uid already runs
OUTPUT_LIMIT = 1 << 20
CODE_UID = 299_999  # the unprivileged uid a root grader runs model code as
OPT_IN_ENV = "PTB_CODE_SANDBOX"
RLIMITS_ONLY = "rlimits-only"
SCRUBBED_PATH = "/usr/local/bin:/usr/bin:/bin"


class CodeSandboxUnavailable(ConfigError):
    """bubblewrap cannot start here and the user did not opt in to rlimits-only."""


def interpreter() -> str:
    """The base Python (not the grader's venv): tests of model code need only the stdlib."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix) / "bin" / name
    return str(base) if base.exists() else sys.executable


def _probe_bwrap() -> bool:
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    probe = [exe, "--unshare-all", "--ro-bind", "/", "/", "--", "/bin/true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


_bwrap_ok: dict[str | None, bool] = {}  # per `bwrap` found on PATH
_warned: list[bool] = []


def bwrap_works() -> bool:
    """Whether bubblewrap can create its namespaces here (probed once per bwrap binary)."""
    exe = shutil.which("bwrap")
    if exe not in _bwrap_ok:
        _bwrap_ok[exe] = _probe_bwrap()
    return _bwrap_ok[exe]


def isolation() -> str:
    """ "bwrap", or "rlimits-only" where the user opted in; else `CodeSandboxUnavailable`."""
    if bwrap_works():
        return "bwrap"
    if os.environ.get(OPT_IN_ENV) == RLIMITS_ONLY:
        if not _warned:
            _warned.append(True)
            log.warning("bubblewrap is unavailable: model-written code runs with rlimits only")
        return RLIMITS_ONLY
    raise CodeSandboxUnavailable(
        "bubblewrap cannot start here, so model-written code cannot run isolated",
        "apt-get install bubblewrap and allow unprivileged user namespaces "
        f"(sysctl kernel.unprivileged_userns_clone=1), or set {OPT_IN_ENV}={RLIMITS_ONLY} "
        "to accept running it with rlimits only (recorded in every score)",
    )


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


def _limits(cpu_s: int) -> Any:
    as_root = os.geteuid() == 0
    nproc = PROCESSES if as_root else _processes_of(os.geteuid()) + PROCESSES

    def apply() -> None:
        os.setsid()
        for kind, value in (
            (resource.RLIMIT_CPU, cpu_s),
            (resource.RLIMIT_AS, ADDRESS_SPACE),
            (resource.RLIMIT_FSIZE, FILE_SIZE),
            (resource.RLIMIT_NOFILE, OPEN_FILES),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(kind, (value, value))
        if not as_root:  # as root, setpriv below switches uid first; the limit follows it
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return apply


def command(argv: list[str], directory: Path, cwd: str, mode: str) -> list[str]:
    """The sandboxed command line for argv run in `directory` (seen as /work inside)."""
    argv = [
        interpreter() if a in ("python", "python3") and i == 0 else a for i, a in enumerate(argv)
    ]
    if mode != "bwrap":
        return argv
    as_root = os.geteuid() == 0
    args = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session"]
    args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
    if not as_root:
        args += ["--unshare-user"]
    for path, target in guest.system_entries():
        args += ["--symlink", target, path] if target else ["--ro-bind", path, path]
    base = Path(sys.base_prefix)
    if not str(base).startswith(("/usr", "/bin", "/lib")):
        args += ["--ro-bind", str(base), str(base)]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    args += ["--bind", str(directory), WORKDIR, "--chdir", cwd, "--clearenv"]
    args += ["--setenv", "PATH", SCRUBBED_PATH, "--setenv", "HOME", WORKDIR]
    args += ["--"]
    if as_root:
        nproc = str(PROCESSES)
        args += ["prlimit", f"--nproc={nproc}:{nproc}", "--"]
        args += ["setpriv", f"--reuid={CODE_UID}", f"--regid={CODE_UID}", "--clear-groups"]
        args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return args + argv


async def spawn(
    argv: list[str],
    directory: Path,
    *,
    cwd: str = WORKDIR,
    cpu_s: float = CPU_S,
    mode: str | None = None,
) -> asyncio.subprocess.Process:
    """Start argv sandboxed with piped stdin, stdout and stderr, in its own session (`kill`)."""
    mode = mode or isolation()
    full = command(argv, directory, cwd if mode == "bwrap" else str(directory), mode)
    # Never the grader's environment: bwrap clears it itself; rlimits-only gets PATH and HOME.
    env = {"PATH": SCRUBBED_PATH, "HOME": str(directory)}
    return await asyncio.create_subprocess_exec(
        *full,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(directory),
        env=env,
        preexec_fn=_limits(int(cpu_s) + 1),
    )


async def run(
    argv: list[str],
    directory: Path,
    *,
    cwd: str = WORKDIR,
    input: str | bytes | None = None,
    timeout: float | None = None,
    mode: str | None = None,
) -> ExecResult[str]:
    """Run argv sandboxed; a timeout kills the whole session and raises TimeoutError."""
    proc = await spawn(argv, directory, cwd=cwd, cpu_s=timeout or CPU_S, mode=mode)
    data = input.encode() if isinstance(input, str) else input
    try:
        out, err = await asyncio.wait_for(proc.communicate(data), timeout)
    except TimeoutError:
        await kill(proc)
        raise
    return ExecResult(
        success=proc.returncode == 0,
        returncode=proc.returncode or 0,
        stdout=out[:OUTPUT_LIMIT].decode(errors="replace"),
        stderr=err[:OUTPUT_LIMIT].decode(errors="replace"),
    )


async def kill(proc: asyncio.subprocess.Process) -> None:
    """Kill a spawned sandbox's whole session and reap it."""
    _kill_session(proc.pid)
    await proc.wait()


def _kill_session(pid: int) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
