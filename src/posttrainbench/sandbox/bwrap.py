"""The `bwrap` backend (bubblewrap): the default on Linux. No daemon, no root needed.

The agent gets its own mount, PID, network, IPC and UTS namespaces. It sees: the workspace
read-write at `/workspace` (with `evaluate.py`, `templates/`, `timer.sh` and `data/` mounted
read-only over it), the base model's files read-only at `/model`, the agent environment (the
harness's Python) and the system (`/usr`, part of `/etc`) read-only, HOME, `/tmp` and
`/var/tmp` bound from the run directory (kept for the integrity checks; tmpfs without one), a
`/dev`, a fresh `/proc` that shows only its own processes, the GPUs it was given, and the
bridged unix sockets of the relay and the egress proxy in `/run/ptb`. Nothing else of the host:
no home, no results, no other runs, no ptb cache.

Network: loopback only; the egress proxy and the relay are reached through their bridges.
When the harness runs as root, the agent still runs as an unprivileged uid (one per run, see
`agent_uid`): bubblewrap sets up the namespaces as root, then `setpriv` drops every privilege
before the agent's command runs. Without root, bubblewrap uses a user namespace.

bubblewrap's child dies with its PID namespace's init; the agent's processes stay in the
launched process group, so the runner's SIGTERM → grace → SIGKILL reaches all of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from posttrainbench.errors import ConfigError, MissingDependencyError
from posttrainbench.sandbox import bridge, gpu, guest, limits
from posttrainbench.sandbox.base import (
    GUEST,
    GUEST_SOCKETS,
    GUEST_USER,
    Capabilities,
    Launched,
    LaunchRequest,
    Mount,
    Sandbox,
)

log = logging.getLogger(__name__)
UID_BASE, UID_SPAN = 200_000, 100_000
GPU_CONTROL = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")
# Evaluator, its test inputs and timer stay read-only inside (rule 4); `data/` is the
# benchmark's public data.
READ_ONLY_IN_WORKSPACE = (
    "evaluate.py", "templates", "eval_data", "timer.sh", ".ptb_deadline", "data", "check_data.py"
)  # fmt: skip


def agent_uid(run_id: str) -> int:
    """The unprivileged uid a root harness gives a run's agent: stable per run, distinct across
    runs (so rlimits and file ownership of concurrent runs never mix). PTB_SANDBOX_UID fixes it."""
    fixed = os.environ.get("PTB_SANDBOX_UID")
    if fixed and fixed.isdigit():
        return int(fixed)
    digest = int(hashlib.sha256(run_id.encode()).hexdigest(), 16)
    return UID_BASE + digest % UID_SPAN


def identity_files(uid: int) -> dict[str, bytes]:
    """/etc/passwd and /etc/group as a root harness's agent sees them: the host's entries plus
    its own uid, so getpwuid() knows it (getpass.getuser() in torch._dynamo, which every
    DistributedDataParallel imports, raises KeyError for a uid without an entry)."""
    entries = {
        "passwd": f"{GUEST_USER}:x:{uid}:{uid}:posttrainbench agent:{GUEST.home}:/bin/bash\n",
        "group": f"{GUEST_USER}:x:{uid}:\n",
    }
    files = {}
    for name, entry in entries.items():
        try:
            host = Path("/etc", name).read_text()
        except OSError:
            host = ""
        if host and not host.endswith("\n"):
            host += "\n"
        known = any(line.split(":")[2:3] == [str(uid)] for line in host.splitlines())
        files[f"/etc/{name}"] = (host if known else host + entry).encode()
    return files


def _data_fd(stack: contextlib.ExitStack, content: bytes) -> int:
    """A descriptor to read `content` from, open until the stack closes."""
    f = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 (the stack closes it)
    f.write(content)
    f.seek(0)
    return f.fileno()


def _bwrap() -> str:
    path = shutil.which("bwrap")
    if path is None:
        raise MissingDependencyError(
            "bubblewrap is not installed", "apt-get install bubblewrap (or choose --sandbox host)"
        )
    return path


def _parents(paths: list[PurePosixPath]) -> list[PurePosixPath]:
    """Directories above the mount points, outermost first: made traversable (bubblewrap would
    create them private to root)."""
    taken = {PurePosixPath(p) for p, _ in guest.system_entries()} | {PurePosixPath("/")}
    parents = {a for p in paths for a in p.parents} - taken
    return sorted(parents, key=lambda p: len(p.parts))


def _check_readable(mounts: list[Mount]) -> None:
    """As root, the agent runs under another uid: a mounted file it cannot read is a setup error
    worth one clear line, not a puzzling `Permission denied` inside the run."""
    for mount in mounts:
        with contextlib.suppress(OSError):
            st = mount.host.stat()
            if stat.S_ISREG(st.st_mode) and not st.st_mode & stat.S_IROTH:
                raise ConfigError(
                    f"{mount.host} is not readable by the sandboxed agent (mode "
                    f"{stat.S_IMODE(st.st_mode):o})",
                    f"chmod o+r {mount.host} (as the Hugging Face cache does)",
                )


def _chown_tree(root: Path, uid: int) -> None:
    os.chown(root, uid, uid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, uid, follow_symlinks=False)


class BwrapSandbox(Sandbox):
    name = "bwrap"
    capabilities = Capabilities(
        isolation=True,
        network_policy=True,
        gpu=True,
        limits=("memory", "processes", "open_files", "file_bytes"),
    )

    def check(self) -> None:
        exe = _bwrap()
        probe = subprocess.run(
            [exe, "--unshare-all", "--ro-bind", "/", "/", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if probe.returncode != 0:
            reason = (probe.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise MissingDependencyError(
                f"bubblewrap cannot create namespaces here: {reason}",
                "enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) "
                "or run with --sandbox host",
            )

    def command(
        self,
        request: LaunchRequest,
        *,
        root: bool | None = None,
        data_fds: Mapping[str, int] | None = None,
    ) -> list[str]:
        """The bwrap command line for a request (also what the tests inspect). `data_fds` maps
        guest files to descriptors holding their contents (the agent's /etc/passwd …)."""
        root = os.geteuid() == 0 if root is None else root
        args = [_bwrap()]
        if root:
            args += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
            args += ["--unshare-cgroup-try"]
        else:
            args += ["--unshare-all"]
        args += ["--hostname", "ptb-sandbox"]
        for path, target in guest.system_entries():
            args += ["--symlink", target, path] if target else ["--ro-bind", path, path]
        args += ["--proc", "/proc", "--dev", "/dev"]
        for guest_tmp, host_tmp in (("/tmp", request.tmp), ("/var/tmp", request.var_tmp)):
            if host_tmp is not None:  # kept in the run directory: frozen and scanned after
                if guest_tmp == "/var/tmp":  # bubblewrap would make a missing /var root's only
                    args += ["--perms", "0755", "--dir", "/var"]
                args += ["--bind", str(host_tmp), guest_tmp]
            else:
                args += ["--perms", "1777", "--tmpfs", guest_tmp]
        # bubblewrap would make the missing /home private to root: the agent's uid could not
        # reach its own HOME.
        args += ["--perms", "0755", "--dir", str(GUEST.home.parent)]
        if request.home is not None:
            args += ["--bind", str(request.home), str(GUEST.home)]
        else:
            args += ["--perms", "0777", "--tmpfs", str(GUEST.home)]
        args += ["--bind", str(request.workdir), str(GUEST.workspace)]
        for name in READ_ONLY_IN_WORKSPACE:
            if (request.workdir / name).exists():
                args += ["--ro-bind", str(request.workdir / name), str(GUEST.workspace / name)]
        for parent in _parents([m.guest for m in request.mounts]):
            args += ["--perms", "0755", "--dir", str(parent)]
        for mount in request.mounts:
            args += ["--bind" if mount.writable else "--ro-bind", str(mount.host), str(mount.guest)]
        for dest, data_fd in (data_fds or {}).items():
            args += ["--perms", "0644", "--ro-bind-data", str(data_fd), dest]
        if request.gpus:
            args += self._gpu_args(request.gpus)
        if request.bridges:
            args += ["--perms", "0755", "--dir", str(GUEST_SOCKETS)]
            for b in request.bridges:
                args += ["--bind", str(b.socket), str(self.socket_path(b.name))]
        # Unprivileged, the sandbox's own root (and the /model folder in it) belongs to the
        # caller's uid: without this the agent could add files there.
        args += ["--remount-ro", "/"]
        args += ["--chdir", str(GUEST.workspace), "--"]
        if root:
            uid = agent_uid(request.run_id)
            args += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
            args += ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        inner = bridge.wrap(
            request.argv, [(b.port, str(self.socket_path(b.name))) for b in request.bridges]
        )
        return args + inner

    @staticmethod
    def socket_path(name: str) -> PurePosixPath:
        return GUEST_SOCKETS / f"{name}.sock"

    @staticmethod
    def guest_env(request: LaunchRequest) -> dict[str, str]:
        """Only the given GPUs' device nodes exist inside, and CUDA numbers the devices it can
        open from 0 (in PCI order): host indices would name devices that are not there."""
        env = dict(request.env)
        if request.gpus:
            env |= gpu.visible_gpus(range(len(request.gpus)))
        return env

    @staticmethod
    def _gpu_args(gpus: list[int]) -> list[str]:
        args: list[str] = []
        for node in gpu.device_nodes(gpus):
            args += ["--dev-bind", str(node), str(node)]
        for name in GPU_CONTROL:
            if os.path.exists(f"/dev/{name}"):
                args += ["--dev-bind", f"/dev/{name}", f"/dev/{name}"]
        if os.path.isdir("/dev/nvidia-caps"):
            args += ["--dev-bind", "/dev/nvidia-caps", "/dev/nvidia-caps"]
        # NVML and CUDA read PCI topology and driver parameters from /sys.
        args += ["--ro-bind", "/sys", "/sys"]
        return args

    def launch(self, request: LaunchRequest) -> Launched:
        if request.bridges:
            bridge.check_socat()
        root = os.geteuid() == 0
        if root:
            _check_readable(request.mounts)
            uid = agent_uid(request.run_id)
            _chown_tree(request.workdir, uid)
            for own in (request.home, request.tmp, request.var_tmp):
                if own is not None:
                    _chown_tree(own, uid)
            for b in request.bridges:
                b.socket.chmod(0o666)
        groups = limits.make_cgroups(f"{request.run_id}-{os.getpid()}", request.limits)
        env = self.guest_env(request)
        identity = identity_files(agent_uid(request.run_id)) if root else {}
        if root:
            env |= {"USER": GUEST_USER, "LOGNAME": GUEST_USER}
        with contextlib.ExitStack() as files:
            data_fds = {dest: _data_fd(files, content) for dest, content in identity.items()}
            command = self.command(request, root=root, data_fds=data_fds)
            split = command.index("--")
            # The options go through a file descriptor (`--args`), so the sandbox's PID 1 does
            # not show host paths in its command line.
            fd = _data_fd(files, b"".join(a.encode() + b"\0" for a in command[1:split]))
            proc = subprocess.Popen(
                [command[0], "--args", str(fd), *command[split:]],
                env=env,
                stdin=subprocess.DEVNULL if request.stdin is None else request.stdin,
                stdout=request.stdout,
                stderr=request.stderr,
                start_new_session=True,
                pass_fds=(fd, *data_fds.values()),
                preexec_fn=limits.preexec(request.limits, groups),
            )
        done = limits.applied(request.limits, groups)
        return Launched(
            proc=proc,
            sandbox_id=",".join(str(g) for g in groups) or None,
            limits_enforced=done.enforced,
            limits_not_enforced=done.not_enforced,
        )

    def stop(self, sandbox_id: str, grace_s: float) -> None:
        # The PID namespace ends with its init; what is left to release is the cgroups.
        limits.remove_cgroups([Path(p) for p in sandbox_id.split(",") if p])
