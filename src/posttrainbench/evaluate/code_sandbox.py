"""`ptb`: the inspect-ai sandbox environment that runs model-written code (HumanEval's tests).

The reference ran completions in the grader's own process (`sandbox="local"`). Here every
`exec` runs under bubblewrap: no network (a fresh network namespace), its own PID, IPC and UTS
namespaces, the system read-only, the sample's own temporary directory as the only writable
place (plus a private /tmp), no environment but PATH, and rlimits on CPU seconds, address space,
file size, open files and processes; a wall-clock timeout kills the whole sandbox. As root the
code also runs as an unprivileged uid, so the process limit counts only its own processes.

Where bubblewrap is missing or cannot create namespaces, the command runs as a plain
subprocess with the same rlimits and scrubbed environment, marked `isolation =
"rlimits-only"` (`ISOLATION`), and a warning is logged once.
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
import tempfile
from pathlib import Path
from typing import Any, Literal, overload

from inspect_ai.util import ExecResult, SandboxEnvironment, sandboxenv

from posttrainbench.sandbox import guest

log = logging.getLogger(__name__)

NAME = "ptb"
WORKDIR = "/work"
CPU_S = 30
ADDRESS_SPACE = 2 << 30  # 2 GiB
FILE_SIZE = 64 << 20
OPEN_FILES = 256
PROCESSES = 64  # above what this uid already runs
OUTPUT_LIMIT = 1 << 20
CODE_UID = 299_999  # the unprivileged uid a root grader runs model code as


def interpreter() -> str:
    """The base Python (not the grader's venv): tests of model code need only the stdlib."""
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(sys.base_prefix) / "bin" / name
    return str(base) if base.exists() else sys.executable


def _bwrap_works() -> bool:
    exe = shutil.which("bwrap")
    if exe is None:
        return False
    probe = [exe, "--unshare-all", "--ro-bind", "/", "/", "--", "/bin/true"]
    try:
        return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


_isolation: str | None = None


def isolation() -> str:
    """ "bwrap" or "rlimits-only" (decided once per process)."""
    global _isolation
    if _isolation is None:
        _isolation = "bwrap" if _bwrap_works() else "rlimits-only"
        if _isolation != "bwrap":
            log.warning(
                "bubblewrap is unavailable: model-written code runs with rlimits only "
                "(apt-get install bubblewrap for isolation)"
            )
    return _isolation


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
    args += ["--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin", "--setenv", "HOME", WORKDIR]
    args += ["--"]
    if as_root:
        nproc = str(PROCESSES)
        args += ["prlimit", f"--nproc={nproc}:{nproc}", "--"]
        args += ["setpriv", f"--reuid={CODE_UID}", f"--regid={CODE_UID}", "--clear-groups"]
        args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    return args + argv


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
    mode = mode or isolation()
    full = command(argv, directory, cwd if mode == "bwrap" else str(directory), mode)
    env = (
        None
        if mode == "bwrap"
        else {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(directory)}
    )
    proc = await asyncio.create_subprocess_exec(
        *full,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=str(directory),
        env=env,
        preexec_fn=_limits(int(timeout or CPU_S) + 1),
    )
    data = input.encode() if isinstance(input, str) else input
    try:
        out, err = await asyncio.wait_for(proc.communicate(data), timeout)
    except TimeoutError:
        _kill_session(proc.pid)
        await proc.wait()
        raise
    return ExecResult(
        success=proc.returncode == 0,
        returncode=proc.returncode or 0,
        stdout=out[:OUTPUT_LIMIT].decode(errors="replace"),
        stderr=err[:OUTPUT_LIMIT].decode(errors="replace"),
    )


def _kill_session(pid: int) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@sandboxenv(name=NAME)
class CodeSandbox(SandboxEnvironment):
    """One temporary directory per sample; every exec is sandboxed (see the module doc)."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="ptb-code-"))
        if os.geteuid() == 0:
            os.chown(self.directory, CODE_UID, CODE_UID)
        self.directory.chmod(0o700)

    @classmethod
    async def sample_init(
        cls, task_name: str, config: Any, metadata: dict[str, str]
    ) -> dict[str, SandboxEnvironment]:
        return {"default": cls()}

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: Any,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        for env in environments.values():
            shutil.rmtree(env.as_type(CodeSandbox).directory, ignore_errors=True)

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        inner = cwd if cwd and cwd.startswith("/") else f"{WORKDIR}/{cwd or ''}".rstrip("/")
        return await run(cmd, self.directory, cwd=inner, input=input, timeout=timeout or CPU_S)

    def _host_path(self, file: str) -> Path:
        rel = file.removeprefix(WORKDIR).lstrip("/") if file.startswith("/") else file
        path = (self.directory / rel).resolve()
        if not path.is_relative_to(self.directory.resolve()):
            raise PermissionError(f"{file} is outside the sandbox's directory")
        return path

    async def write_file(self, file: str, contents: str | bytes) -> None:
        path = self._host_path(file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(contents.encode() if isinstance(contents, str) else contents)
        if os.geteuid() == 0:
            os.chown(path, CODE_UID, CODE_UID)

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        data = self._host_path(file).read_bytes()
        return data.decode() if text else data
