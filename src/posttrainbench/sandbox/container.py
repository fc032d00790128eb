"""The `docker` and `podman` backends: the agent runs in a container of a local image.

Isolated: its own mount, PID, network (`--network none`: loopback only; the relay and the egress
proxy come in as bridged unix sockets at `/run/ptb`), IPC and UTS namespaces; a read-only image
root with HOME, `/tmp` and `/var/tmp` from the run directory (tmpfs without one); no
capabilities and no privilege gain; an unprivileged uid (one per run when the harness is root,
else the harness's own uid); memory, process, open-file and
file-size limits enforced by the engine. Mounted: the workspace read-write at `/workspace` (its
evaluator, templates, timer and data read-only over it) and the request's read-only mounts (the
harness's Python environment at its host paths, the base model at `/model`). Only the GPUs given
are passed in (`--gpus` / CDI), renumbered from 0 inside.

Not isolated or not provided: the image's own `/usr` and `/etc` are used (the host's `/etc`
entries in a request are skipped: they describe the host's libraries, not the image's), so the
harness's Python environment only works in an image of the same distribution and glibc as the
host (see `docker/Dockerfile.agent`). The run never pulls (`--pull never`). A rootless Docker
daemon maps `--user` to a sub-uid that cannot write the workspace: use a rootful daemon or podman.
Rootless podman on cgroup v1 cannot limit memory (reported as not enforced).

The sandbox id is the container's name: killing the `docker run` client does not stop its
container, so `stop` asks the engine to stop and remove it, from any harness process.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import resource
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import ClassVar

from posttrainbench.errors import ConfigError, InfrastructureError, MissingDependencyError
from posttrainbench.sandbox import bridge
from posttrainbench.sandbox.base import (
    GUEST,
    GUEST_SOCKETS,
    Capabilities,
    Launched,
    LaunchRequest,
    Limits,
    Sandbox,
)
from posttrainbench.sandbox.bwrap import (
    READ_ONLY_IN_WORKSPACE,
    _check_readable,
    _chown_tree,
    agent_uid,
)
from posttrainbench.sandbox.gpu import Runner, run_command, visible_gpus

CHECK_TIMEOUT_S = 30
STOP_MARGIN_S = 30
# Data loaders share tensors through /dev/shm; the engines' 64 MB default breaks them. Its pages
# count against the container's memory limit.
SHM_SIZE = "16g"
# The image brings its own /etc, matching its own /usr.
IMAGE_OWNED = (PurePosixPath("/etc"),)
# Variables the engine client itself reads: the agent's values for these names reach the
# container through an env file on a file descriptor; the client keeps the harness's own.
CLIENT_NAMES = ("PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "SHELL")
CLIENT_PREFIXES = ("XDG_", "DOCKER_", "CONTAINER_", "CONTAINERS_", "BUILDAH_", "DBUS_")


def _client_name(name: str) -> bool:
    return name in CLIENT_NAMES or name.startswith(CLIENT_PREFIXES)


def container_name(run_id: str) -> str:
    safe = re.sub(r"[^a-zA-Z0-9_.-]+", "-", run_id).strip("-.")[:64] or "run"
    return f"ptb-{safe}-{secrets.token_hex(4)}"


def _volume(host: Path | str, guest: PurePosixPath | str, writable: bool) -> list[str]:
    if ":" in str(host) or ":" in str(guest):
        raise ConfigError(
            f"cannot mount {host} into a container: its path contains ':'",
            "rename the folder, or use --sandbox bwrap",
        )
    return ["-v", f"{host}:{guest}" if writable else f"{host}:{guest}:ro"]


def _owned_by_image(guest: PurePosixPath) -> bool:
    return any(guest == p or guest.is_relative_to(p) for p in IMAGE_OWNED)


class ContainerSandbox(Sandbox):
    """What docker and podman share; subclasses name the engine and add its quirks."""

    engine: ClassVar[str]
    capabilities = Capabilities(
        isolation=True,
        network_policy=True,
        gpu=True,
        limits=("memory", "processes", "open_files", "file_bytes"),
    )

    def __init__(
        self,
        *,
        executable: str | None = None,
        run: Runner = run_command,
        root: bool | None = None,
    ) -> None:
        self._executable = executable
        self._run = run
        self._root = os.geteuid() == 0 if root is None else root

    # -- engine ------------------------------------------------------------------------------

    def executable(self) -> str:
        path = self._executable or shutil.which(self.engine)
        if path is None:
            raise MissingDependencyError(
                f"{self.engine} is not installed", f"{self.install_hint()}, or use --sandbox bwrap"
            )
        return path

    def install_hint(self) -> str:
        return f"install {self.engine}"

    def probe(self) -> list[str]:
        """A command that succeeds only when the engine answers."""
        raise NotImplementedError

    def engine_hint(self) -> str:
        return f"start the {self.engine} engine"

    def check(self) -> None:
        exe = self.executable()
        try:
            done = self._run([exe, *self.probe()], timeout=CHECK_TIMEOUT_S, env=self.client_env())
        except (OSError, subprocess.TimeoutExpired) as exc:
            reason = str(exc)
        else:
            if done.returncode == 0 and done.stdout.strip():
                return
            reason = done.last_error_line()
        raise MissingDependencyError(
            f"{self.engine} client found but no engine is reachable: {reason[:200]}",
            f"{self.engine_hint()}, or use --sandbox bwrap",
        )

    def client_env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if _client_name(k)}

    # -- command line ------------------------------------------------------------------------

    def user_args(self, request: LaunchRequest) -> list[str]:
        if self._root:
            uid = agent_uid(request.run_id)
            return ["--user", f"{uid}:{uid}"]
        return ["--user", f"{os.getuid()}:{os.getgid()}"]

    def engine_args(self, request: LaunchRequest) -> list[str]:
        """Engine-specific options (runtime, user namespace)."""
        return []

    def ulimit_args(self, limits: Limits) -> list[str]:
        args = []
        if limits.open_files is not None:
            args += ["--ulimit", f"nofile={limits.open_files}:{limits.open_files}"]
        if limits.file_bytes is not None:
            args += ["--ulimit", f"fsize={limits.file_bytes}:{limits.file_bytes}"]
        return args

    def gpu_args(self, gpus: list[int]) -> list[str]:
        raise NotImplementedError

    def memory_enforced(self) -> bool:
        return True

    @staticmethod
    def socket_path(name: str) -> PurePosixPath:
        return GUEST_SOCKETS / f"{name}.sock"

    def guest_env(self, request: LaunchRequest) -> dict[str, str]:
        env = dict(request.env)
        if request.gpus:  # only the given GPUs exist inside, numbered from 0
            env |= visible_gpus(range(len(request.gpus)))
        return env

    def _image(self, request: LaunchRequest) -> str:
        if not request.image:
            raise ConfigError(
                f"the {self.name} sandbox needs an image",
                "pass --image IMAGE (build one from docker/Dockerfile.agent)",
            )
        return request.image

    def command(
        self,
        request: LaunchRequest,
        *,
        name: str | None = None,
        env_file: str = "/dev/fd/3",
    ) -> list[str]:
        """The engine's command line for a request (also what the tests inspect). Names the
        agent reads from the client's own variables go through `env_file`; no value is on it."""
        image = self._image(request)
        name = name or container_name(request.run_id)
        lim = request.limits
        args = [self.executable(), "run", "--rm", "--name", name, "--init", "--pull", "never"]
        args += ["--log-driver", "none", "--hostname", "ptb-sandbox", "--network", "none"]
        args += ["--read-only"]
        for guest_tmp, host_tmp in (("/tmp", request.tmp), ("/var/tmp", request.var_tmp)):
            if host_tmp is not None:  # kept in the run directory: frozen and scanned after
                args += _volume(host_tmp, guest_tmp, writable=True)
            elif guest_tmp == "/tmp":
                args += ["--tmpfs", "/tmp:rw,exec,mode=1777"]
        if request.home is not None:
            args += _volume(request.home, GUEST.home, writable=True)
        else:
            args += ["--tmpfs", f"{GUEST.home}:rw,exec,mode=1777"]
        args += ["--shm-size", SHM_SIZE]
        args += [*self.user_args(request), "--workdir", str(GUEST.workspace)]
        args += ["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        args += self.engine_args(request)
        if lim.processes is not None:
            args += ["--pids-limit", str(lim.processes)]
        if lim.memory_bytes is not None:
            args += ["--memory", str(lim.memory_bytes), "--memory-swap", str(lim.memory_bytes)]
        args += self.ulimit_args(lim)
        args += _volume(request.workdir, GUEST.workspace, writable=True)
        for entry in READ_ONLY_IN_WORKSPACE:
            if (request.workdir / entry).exists():
                args += _volume(request.workdir / entry, GUEST.workspace / entry, writable=False)
        for mount in request.mounts:
            if not _owned_by_image(mount.guest):
                args += _volume(mount.host, mount.guest, mount.writable)
        for b in request.bridges:
            args += _volume(b.socket, self.socket_path(b.name), writable=True)
        if request.gpus:
            args += self.gpu_args(request.gpus)
        env = self.guest_env(request)
        if any(_client_name(k) for k in env):
            args += ["--env-file", env_file]
        for key in sorted(env):
            if not _client_name(key):
                args += ["-e", key]
        inner = bridge.wrap(
            request.argv, [(b.port, str(self.socket_path(b.name))) for b in request.bridges]
        )
        return [*args, image, *inner]

    @staticmethod
    def env_file_text(env: Mapping[str, str]) -> str:
        lines = []
        for key, value in env.items():
            if _client_name(key):
                if "\n" in value:
                    raise ConfigError(
                        f"the agent's {key} holds a newline, which an env file cannot carry",
                        f"remove the newline from {key}",
                    )
                lines.append(f"{key}={value}\n")
        return "".join(lines)

    # -- lifecycle ---------------------------------------------------------------------------

    def check_image(self, image: str) -> None:
        exe = self.executable()
        done = self._run(
            [exe, "image", "inspect", image], timeout=CHECK_TIMEOUT_S, env=self.client_env()
        )
        if done.returncode != 0:
            raise ConfigError(
                f"image {image} is not available to {self.engine} (runs never pull)",
                f"{self.engine} build -t {image} -f docker/Dockerfile.agent . "
                f"(or {self.engine} pull {image})",
            )

    def launch(self, request: LaunchRequest) -> Launched:
        name = container_name(request.run_id)
        self.command(request, name=name)  # refuses a bad request before anything changes
        self.check_image(self._image(request))
        if self._root:
            _check_readable(request.mounts)
            _chown_tree(request.workdir, agent_uid(request.run_id))
            for own in (request.home, request.tmp, request.var_tmp):
                if own is not None:
                    _chown_tree(own, agent_uid(request.run_id))
            for b in request.bridges:
                b.socket.chmod(0o666)
        env = self.guest_env(request)
        client = self.client_env() | {k: v for k, v in env.items() if not _client_name(k)}
        with tempfile.TemporaryFile() as env_file:
            env_file.write(self.env_file_text(env).encode())
            env_file.flush()
            fd = env_file.fileno()
            proc = subprocess.Popen(
                self.command(request, name=name, env_file=f"/dev/fd/{fd}"),
                env=client,
                stdin=subprocess.DEVNULL if request.stdin is None else request.stdin,
                stdout=request.stdout,
                stderr=request.stderr,
                start_new_session=True,
                pass_fds=(fd,),
            )
        wanted = [
            key
            for key, value in (
                ("memory", request.limits.memory_bytes),
                ("processes", request.limits.processes),
                ("open_files", request.limits.open_files),
                ("file_bytes", request.limits.file_bytes),
            )
            if value is not None
        ]
        missing = [] if self.memory_enforced() else ["memory"]
        return Launched(
            proc=proc,
            sandbox_id=name,
            limits_enforced=[k for k in wanted if k not in missing],
            limits_not_enforced=[k for k in wanted if k in missing],
        )

    def stop(self, sandbox_id: str, grace_s: float) -> None:
        exe = self.executable()
        grace = max(0, math.ceil(grace_s))
        env = self.client_env()
        timeout = grace + STOP_MARGIN_S
        with contextlib.suppress(subprocess.TimeoutExpired):  # rm -f still kills it
            self._run([exe, "stop", "-t", str(grace), sandbox_id], timeout=timeout, env=env)
        try:
            done = self._run([exe, "rm", "-f", sandbox_id], timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            reason = f"`{self.engine} rm -f` did not answer in {timeout} s"
        else:
            if done.returncode == 0 or "no such container" in done.stderr.lower():
                return
            reason = done.last_error_line()[:200]
        raise InfrastructureError(
            f"{self.engine} could not remove container {sandbox_id}: {reason}",
            f"remove it by hand: {self.engine} rm -f {sandbox_id}",
        )


class DockerSandbox(ContainerSandbox):
    name = "docker"
    engine = "docker"

    def install_hint(self) -> str:
        return "install Docker Engine (https://docs.docker.com/engine/install/)"

    def probe(self) -> list[str]:
        return ["version", "--format", "{{.Server.Version}}"]

    def engine_hint(self) -> str:
        return "start the Docker daemon (systemctl start docker) or set DOCKER_HOST"

    def gpu_args(self, gpus: list[int]) -> list[str]:
        # The value is CSV: a list of devices needs its own quotes.
        return ["--gpus", '"device={}"'.format(",".join(str(g) for g in gpus))]


class PodmanSandbox(ContainerSandbox):
    name = "podman"
    engine = "podman"

    def __init__(
        self,
        *,
        executable: str | None = None,
        run: Runner = run_command,
        root: bool | None = None,
        runtime: str | None = None,
        cgroup_v2: bool | None = None,
    ) -> None:
        super().__init__(executable=executable, run=run, root=root)
        self._cgroup_v2 = (
            Path("/sys/fs/cgroup/cgroup.controllers").exists() if cgroup_v2 is None else cgroup_v2
        )
        self._runtime = self._pick_runtime() if runtime is None else runtime

    def _pick_runtime(self) -> str:
        """`runc` where crun is missing or cannot work (crun refuses hybrid cgroup hosts);
        "" keeps podman's configured runtime."""
        if shutil.which("runc") and (not shutil.which("crun") or not self._cgroup_v2):
            return "runc"
        return ""

    def install_hint(self) -> str:
        return "apt-get install podman runc"

    def probe(self) -> list[str]:
        return ["info", "--format", "{{.Host.CgroupsVersion}}"]

    def engine_hint(self) -> str:
        return "check `podman info` (storage, runtime, subuids)"

    def engine_args(self, request: LaunchRequest) -> list[str]:
        args = ["--runtime", self._runtime] if self._runtime else []
        if not self._root:  # rootless: the agent keeps the user's uid, so it owns the workspace
            args += ["--userns", "keep-id"]
        return args

    def ulimit_args(self, limits: Limits) -> list[str]:
        # Without explicit values podman asks the runtime for the host's maxima, which a
        # process in a non-initial user namespace may not be allowed to set.
        args = []
        for key, value, rlimit in (
            ("nofile", limits.open_files, resource.RLIMIT_NOFILE),
            ("nproc", limits.processes, resource.RLIMIT_NPROC),
        ):
            soft, hard = (value, value) if value is not None else resource.getrlimit(rlimit)
            args += ["--ulimit", f"{key}={soft}:{hard}"]
        if limits.file_bytes is not None:
            args += ["--ulimit", f"fsize={limits.file_bytes}:{limits.file_bytes}"]
        return args

    def gpu_args(self, gpus: list[int]) -> list[str]:
        args = []
        for gpu in gpus:  # CDI names (nvidia-ctk cdi generate)
            args += ["--device", f"nvidia.com/gpu={gpu}"]
        return args

    def memory_enforced(self) -> bool:
        return self._root or self._cgroup_v2
