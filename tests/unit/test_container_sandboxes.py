"""The docker, podman and apptainer backends: the command lines they build for a representative
request, `stop` and `check` against a fake engine, and (where podman can run here) one real
container launched through `PodmanSandbox.launch`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest

from posttrainbench.errors import ConfigError, InfrastructureError, MissingDependencyError
from posttrainbench.sandbox.apptainer import ApptainerSandbox
from posttrainbench.sandbox.base import Bridge, LaunchRequest, Limits, Mount
from posttrainbench.sandbox.bwrap import agent_uid
from posttrainbench.sandbox.container import ContainerSandbox, DockerSandbox, PodmanSandbox
from posttrainbench.sandbox.gpu import Completed
from tests.needs import require

SECRET = "sk-very-secret-value"
ENV = {
    "PATH": "/opt/venv/bin:/usr/bin:/bin",
    "HOME": "/home/agent",
    "TMPDIR": "/tmp",
    "ANTHROPIC_API_KEY": SECRET,
    "ANTHROPIC_BASE_URL": "http://127.0.0.1:4000",
    "CUDA_VISIBLE_DEVICES": "2,3",
    "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
}
LIMITS = Limits(memory_bytes=8 * 2**30, processes=512, open_files=4096, file_bytes=2**34)


class FakeEngine:
    """Records every command; answers from a table of (argv prefix → Completed)."""

    def __init__(self, answers: dict[str, Completed] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def __call__(
        self, argv: list[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> Completed:
        self.calls.append(argv)
        verb = argv[1]
        return self.answers.get(verb, Completed(returncode=0, stdout="ok\n"))


@pytest.fixture
def request_(tmp_path: Path) -> LaunchRequest:
    ws = tmp_path / "workspace"
    (ws / "templates").mkdir(parents=True)
    (ws / "data").mkdir()
    for name in ("evaluate.py", "timer.sh", ".ptb_deadline"):
        (ws / name).write_text("x")
    model = tmp_path / "blobs"
    model.mkdir()
    (model / "config").write_text("{}")
    (model / "weights").write_text("w")
    venv = tmp_path / "venv"
    venv.mkdir()
    mounts = [
        Mount(Path("/etc/hosts"), PurePosixPath("/etc/hosts")),
        Mount(venv, PurePosixPath(venv)),
        Mount(model / "config", PurePosixPath("/model/config.json")),
        Mount(model / "weights", PurePosixPath("/model/model.safetensors")),
    ]
    bridges = [
        Bridge("relay", tmp_path / "relay.sock", 4000),
        Bridge("egress", tmp_path / "egress.sock", 3128),
    ]
    return LaunchRequest(
        argv=["claude", "--print", "do the task"],
        workdir=ws,
        env=dict(ENV),
        stdout=1,
        stderr=2,
        run_id="r1/qwen:gsm8k",
        mounts=mounts,
        bridges=bridges,
        network="none",
        gpus=[2, 3],
        limits=LIMITS,
        image="ptb-agent:latest",
    )


def _values(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


def _image_index(args: list[str], image: str) -> int:
    index = args.index(image)
    assert args[index + 1 : index + 3] == ["/bin/sh", "-c"], "bridge.wrap follows the image"
    assert args[-3:] == ["claude", "--print", "do the task"]
    return index


def _common_container_checks(args: list[str], request: LaunchRequest) -> list[str]:
    index = _image_index(args, "ptb-agent:latest")
    options = args[:index]
    assert options[1:3] == ["run", "--rm"]
    name = _values(options, "--name")[0]
    assert name.startswith("ptb-r1-qwen-gsm8k-")
    for flag, value in (
        ("--network", "none"),
        ("--cap-drop", "ALL"),
        ("--security-opt", "no-new-privileges"),
        ("--workdir", "/workspace"),
        ("--pids-limit", "512"),
        ("--memory", str(8 * 2**30)),
        ("--memory-swap", str(8 * 2**30)),
        ("--pull", "never"),
    ):
        assert value in _values(options, flag), (flag, value)
    assert "--read-only" in options and "--init" in options
    assert {t.split(":")[0] for t in _values(options, "--tmpfs")} == {"/tmp", "/home/agent"}
    ulimits = _values(options, "--ulimit")
    assert "nofile=4096:4096" in ulimits and f"fsize={2**34}:{2**34}" in ulimits
    ws = request.workdir
    volumes = set(_values(options, "-v"))
    assert f"{ws}:/workspace" in volumes
    for name in ("evaluate.py", "templates", "timer.sh", ".ptb_deadline", "data"):
        assert f"{ws / name}:/workspace/{name}:ro" in volumes
    venv = request.mounts[1].host
    assert f"{venv}:{venv}:ro" in volumes
    assert f"{request.mounts[2].host}:/model/config.json:ro" in volumes
    assert f"{request.mounts[3].host}:/model/model.safetensors:ro" in volumes
    assert not any(":/etc/" in v for v in volumes), "the image's /etc is used"
    for b in request.bridges:
        assert f"{b.socket}:/run/ptb/{b.name}.sock" in volumes
    script = args[index + 3]
    assert "TCP-LISTEN:4000" in script and "UNIX-CONNECT:/run/ptb/relay.sock" in script
    assert "TCP-LISTEN:3128" in script and "UNIX-CONNECT:/run/ptb/egress.sock" in script
    # Names only: every value stays off the command line.
    assert set(_values(options, "-e")) == {
        "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
    }  # fmt: skip
    assert _values(options, "--env-file") == ["/dev/fd/3"]
    joined = " ".join(args)
    for key, value in ENV.items():
        assert f"{key}={value}" not in joined, key
    for value in (SECRET, ENV["PATH"], ENV["ANTHROPIC_BASE_URL"], "PCI_BUS_ID"):
        assert value not in joined, value
    return options


def test_docker_command_as_root(request_: LaunchRequest) -> None:
    sandbox = DockerSandbox(executable="/usr/bin/docker", root=True)
    args = sandbox.command(request_)
    assert args[0] == "/usr/bin/docker"
    options = _common_container_checks(args, request_)
    uid = agent_uid(request_.run_id)
    assert _values(options, "--user") == [f"{uid}:{uid}"]
    assert _values(options, "--gpus") == ['"device=2,3"']
    assert "--runtime" not in options and "--userns" not in options


def test_docker_command_as_user(request_: LaunchRequest) -> None:
    args = DockerSandbox(executable="docker", root=False).command(request_)
    assert _values(args, "--user") == [f"{os.getuid()}:{os.getgid()}"]


def test_podman_command(request_: LaunchRequest) -> None:
    sandbox = PodmanSandbox(executable="/usr/bin/podman", root=True, runtime="runc")
    options = _common_container_checks(sandbox.command(request_), request_)
    assert _values(options, "--runtime") == ["runc"]
    assert _values(options, "--device") == ["nvidia.com/gpu=2", "nvidia.com/gpu=3"]
    assert "nproc=512:512" in _values(options, "--ulimit")
    assert "--gpus" not in options and "--userns" not in options


def test_podman_rootless_and_without_limits(request_: LaunchRequest) -> None:
    request_ = replace(request_, limits=Limits())
    sandbox = PodmanSandbox(executable="podman", root=False, runtime="", cgroup_v2=False)
    args = sandbox.command(request_)
    assert "--runtime" not in args
    assert _values(args, "--userns") == ["keep-id"]
    assert _values(args, "--user") == [f"{os.getuid()}:{os.getgid()}"]
    ulimits = _values(args, "--ulimit")  # podman always needs these two
    assert [u.split("=")[0] for u in ulimits] == ["nofile", "nproc"]
    assert "--memory" not in args and "--pids-limit" not in args
    assert not sandbox.memory_enforced()


def test_podman_picks_runc_where_crun_cannot_work(monkeypatch: pytest.MonkeyPatch) -> None:
    found = {"runc": "/usr/sbin/runc", "crun": "/usr/bin/crun"}
    monkeypatch.setattr(shutil, "which", found.get)
    assert PodmanSandbox(cgroup_v2=False)._runtime == "runc"
    assert PodmanSandbox(cgroup_v2=True)._runtime == ""
    del found["crun"]
    assert PodmanSandbox(cgroup_v2=True)._runtime == "runc"


def test_guest_env_renumbers_gpus_and_env_file_carries_client_names(
    request_: LaunchRequest,
) -> None:
    sandbox = DockerSandbox(executable="docker", root=True)
    env = sandbox.guest_env(request_)
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    text = ContainerSandbox.env_file_text(env)
    assert text.splitlines() == [f"PATH={ENV['PATH']}", "HOME=/home/agent", "TMPDIR=/tmp"]
    with pytest.raises(ConfigError, match="newline"):
        ContainerSandbox.env_file_text({"PATH": "a\nb"})


def test_container_refuses_missing_image_and_colons(request_: LaunchRequest) -> None:
    sandbox = DockerSandbox(executable="docker", root=True)
    request_ = replace(request_, image=None)
    with pytest.raises(ConfigError) as err:
        sandbox.command(request_)
    assert "--image" in (err.value.hint or "") and "\n" not in err.value.message
    with pytest.raises(ConfigError):
        sandbox.launch(request_)
    request_ = replace(request_, image="img")
    request_.mounts.append(Mount(Path("/a:b"), PurePosixPath("/x")))
    with pytest.raises(ConfigError, match="':'"):
        sandbox.command(request_)


def test_launch_refuses_an_image_the_engine_lacks(request_: LaunchRequest) -> None:
    engine = FakeEngine({"image": Completed(returncode=1, stderr="Error: no such image")})
    with pytest.raises(ConfigError, match="not available to podman"):
        PodmanSandbox(executable="podman", run=engine, root=False, runtime="").launch(request_)
    assert engine.calls == [["podman", "image", "inspect", "ptb-agent:latest"]]


def test_stop_stops_then_removes_by_name() -> None:
    engine = FakeEngine()
    DockerSandbox(executable="docker", run=engine).stop("ptb-r1-abcd", 4.2)
    assert engine.calls == [
        ["docker", "stop", "-t", "5", "ptb-r1-abcd"],
        ["docker", "rm", "-f", "ptb-r1-abcd"],
    ]


def test_stop_is_idempotent_and_reports_engine_failures() -> None:
    gone = Completed(returncode=1, stderr="Error: no such container: ptb-x\n")
    engine = FakeEngine({"stop": gone, "rm": gone})
    PodmanSandbox(executable="podman", run=engine, runtime="").stop("ptb-x", 0)
    assert engine.calls[0] == ["podman", "stop", "-t", "0", "ptb-x"]
    broken = Completed(returncode=1, stderr="Cannot connect to the Docker daemon\n")
    with pytest.raises(InfrastructureError, match="could not remove container ptb-x"):
        DockerSandbox(executable="docker", run=FakeEngine({"rm": broken})).stop("ptb-x", 1)


def test_check_client_without_engine() -> None:
    down = Completed(returncode=1, stderr="Cannot connect to the Docker daemon at unix://x\n")
    engine = FakeEngine({"version": down})
    with pytest.raises(MissingDependencyError) as err:
        DockerSandbox(executable="docker", run=engine).check()
    assert err.value.message.startswith("docker client found but no engine is reachable")
    assert err.value.hint and "DOCKER_HOST" in err.value.hint
    assert engine.calls == [["docker", "version", "--format", "{{.Server.Version}}"]]
    DockerSandbox(executable="docker", run=FakeEngine()).check()  # an engine that answers


def test_check_of_the_real_docker_says_which_part_is_missing() -> None:
    """Whatever this machine has: no client, a client without an engine, or both."""
    if shutil.which("docker") is None:
        with pytest.raises(MissingDependencyError, match="docker is not installed"):
            DockerSandbox().check()
        return
    probe = subprocess.run(["docker", "version"], capture_output=True, timeout=30)
    if probe.returncode == 0:
        DockerSandbox().check()
        return
    with pytest.raises(MissingDependencyError, match="no engine is reachable"):
        DockerSandbox().check()


def test_check_without_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingDependencyError, match="podman is not installed"):
        PodmanSandbox(runtime="").check()
    with pytest.raises(MissingDependencyError, match="neither apptainer nor singularity"):
        ApptainerSandbox().check()


# -- apptainer --------------------------------------------------------------------------------


@pytest.fixture
def apptainer_bin(tmp_path: Path) -> Path:
    exe = tmp_path / "bin" / "apptainer"
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    return exe


def test_apptainer_command(request_: LaunchRequest, apptainer_bin: Path, tmp_path: Path) -> None:
    image = tmp_path / "agent.sif"
    image.write_text("sif")
    request_ = replace(request_, image=str(image))
    work = tmp_path / "work"
    sandbox = ApptainerSandbox(executable=str(apptainer_bin), root=True)
    args = sandbox.command(request_, workdir=work)
    index = _image_index(args, str(image))
    options = args[:index]
    assert options[:2] == [str(apptainer_bin), "exec"]
    for flag in ("--containall", "--cleanenv", "--pid", "--ipc", "--net", "--nv", "--no-privs"):
        assert flag in options, flag
    assert _values(options, "--network") == ["none"]
    assert _values(options, "--no-mount") == ["bind-paths,cwd"]
    assert _values(options, "--pwd") == ["/workspace"]
    assert _values(options, "--workdir") == [str(work)]
    assert _values(options, "--home") == [f"{work / 'home'}:/home/agent"]
    uid = agent_uid(request_.run_id)
    assert _values(options, "--security") == [f"uid:{uid},gid:{uid}"]
    binds = set(_values(options, "--bind"))
    ws = request_.workdir
    assert f"{ws}:/workspace:rw" in binds
    for name in ("evaluate.py", "templates", "timer.sh", ".ptb_deadline", "data"):
        assert f"{ws / name}:/workspace/{name}:ro" in binds
    assert f"{request_.mounts[2].host}:/model/config.json:ro" in binds
    assert not any(":/etc/" in b for b in binds)
    assert f"{request_.bridges[0].socket}:/run/ptb/relay.sock:rw" in binds
    assert SECRET not in " ".join(args)
    env = sandbox.process_env(request_)
    assert env["APPTAINERENV_ANTHROPIC_API_KEY"] == SECRET
    assert env["APPTAINERENV_CUDA_VISIBLE_DEVICES"] == "2,3"  # host numbering: --nv binds all
    assert "APPTAINERENV_HOME" not in env and "ANTHROPIC_API_KEY" not in env
    assert ApptainerSandbox.capabilities.limits == ("processes", "open_files", "file_bytes")


def test_singularity_binary_and_prefix(request_: LaunchRequest, tmp_path: Path) -> None:
    exe = tmp_path / "singularity"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    sandbox = ApptainerSandbox(executable=str(exe), root=False)
    assert sandbox.env_prefix() == "SINGULARITYENV_"
    request_ = replace(request_, image=str(exe))  # any existing path will do here
    args = sandbox.command(request_, workdir=tmp_path)
    assert "--security" not in args and "--no-privs" not in args


def test_apptainer_image_errors_and_stop(request_: LaunchRequest, apptainer_bin: Path) -> None:
    sandbox = ApptainerSandbox(executable=str(apptainer_bin))
    request_ = replace(request_, image=None)
    with pytest.raises(ConfigError, match="needs an image"):
        sandbox.launch(request_)
    request_ = replace(request_, image="/nonexistent/agent.sif")
    with pytest.raises(ConfigError, match="does not exist"):
        sandbox.launch(request_)
    work = request_.workdir.parent / "apptainer-work"
    (work / "home").mkdir(parents=True)
    sandbox_id = json.dumps({"workdir": str(work), "cgroups": []})
    sandbox.stop(sandbox_id, 1)
    assert not work.exists()
    sandbox.stop(sandbox_id, 1)  # idempotent


# -- a real podman container ------------------------------------------------------------------

IMAGE = "localhost/ptb-test-rootfs:latest"


@pytest.fixture(scope="module")
def podman_image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image of only mount points and merged-usr links; the host's /usr is mounted in."""
    require("podman")
    root = tmp_path_factory.mktemp("rootfs")
    tar_path = root / "rootfs.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name in ("usr", "etc", "tmp", "proc", "dev", "sys", "run", "workspace"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name in ("bin", "lib", "lib64", "sbin"):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, f"usr/{name}"
            tar.addfile(info)
    done = subprocess.run(
        ["podman", "import", str(tar_path), IMAGE], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"podman cannot import an image here: {done.stderr[-200:]}"
    return IMAGE


def test_podman_launch_isolates(podman_image: str, tmp_path: Path) -> None:
    sandbox = PodmanSandbox()
    sandbox.check()  # a MissingDependencyError here names what is missing and its install hint
    ws = tmp_path / "workspace"
    ws.mkdir()
    (ws / "notes.txt").write_text("mine")
    (ws / "evaluate.py").write_text("print()")
    out = tmp_path / "out.txt"
    script = (
        "id -u; ls /workspace; cat /etc/hostname; echo; cat /proc/1/comm; "
        f"ls -d {Path.home()} 2>/dev/null || echo no-host-home; "
        "touch /workspace/evaluate.py 2>/dev/null || echo evaluate-ro; "
        "touch /workspace/new && echo workspace-rw; "
        'echo "key=$PTB_SECRET home=$HOME"'
    )
    with out.open("wb") as sink:
        request = LaunchRequest(
            argv=["/bin/sh", "-c", script],
            workdir=ws,
            env={"PATH": "/usr/bin:/bin", "HOME": "/home/agent", "PTB_SECRET": "s3cr3t"},
            stdout=sink.fileno(),
            stderr=sink.fileno(),
            run_id="podman-test",
            mounts=[Mount(Path("/usr"), PurePosixPath("/usr"))],
            limits=Limits(memory_bytes=2**30, processes=128, open_files=1024),
            image=podman_image,
        )
        launched = sandbox.launch(request)
        try:
            rc = launched.proc.wait(timeout=120)
        finally:
            assert launched.sandbox_id
            sandbox.stop(launched.sandbox_id, 1)
    text = out.read_text()
    assert rc == 0, text
    lines = text.splitlines()
    expected_uid = agent_uid("podman-test") if os.geteuid() == 0 else os.getuid()
    assert lines[0] == str(expected_uid)
    assert "notes.txt" in lines and "evaluate.py" in lines
    assert "ptb-sandbox" in lines
    assert lines[lines.index("ptb-sandbox") + 1] in {"catatonit", "podman-init", "tini"}
    for marker in ("no-host-home", "evaluate-ro", "workspace-rw", "key=s3cr3t home=/home/agent"):
        assert marker in lines, (marker, text)
    assert (ws / "new").exists()
    gone = subprocess.run(["podman", "container", "exists", launched.sandbox_id], timeout=60)
    assert gone.returncode == 1
