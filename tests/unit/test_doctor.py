"""`ptb doctor` on faked machines (missing tools, docker without engine, bwrap without user
namespaces, GPUs) and once on this one."""

from __future__ import annotations

import importlib.metadata
import io
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TypeAlias

import pytest
from rich.console import Console

from posttrainbench import doctor
from posttrainbench.doctor import CLI_PACKAGES, DoctorReport, Machine, Probe
from posttrainbench.sandbox.gpu import Completed

EVERYTHING = {
    "bwrap",
    "docker",
    "podman",
    "apptainer",
    "socat",
    "nvidia-smi",
    "git",
    "node",
    "npm",
    *(cli.bin for cli, _ in CLI_PACKAGES.values()),
}
PACKAGES = {"torch": "2.8.0+cu128", "transformers": "5.1.0", "trl": "1.0.0", "peft": "0.17.1"}
Answer: TypeAlias = Completed | BaseException


def fake(
    present: set[str] = EVERYTHING,
    answers: Mapping[tuple[str, ...], Answer] | None = None,
    packages: Mapping[str, str] = PACKAGES,
) -> Machine:
    """A machine with the programs `present`; a command answers as the longest matching
    argv prefix of `answers` says (the program by its base name), else `<program> 1.0`."""

    def which(name: str) -> str | None:
        return f"/usr/bin/{name}" if name in present else None

    def run(argv: list[str], *, timeout: float, env: Mapping[str, str] | None = None) -> Completed:
        key = (Path(argv[0]).name, *argv[1:])
        matches = [k for k in answers or {} if key[: len(k)] == k]
        if not matches:
            return Completed(returncode=0, stdout=f"{key[0]} 1.0\n")
        answer = (answers or {})[max(matches, key=len)]
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def version(dist: str) -> str:
        if dist not in packages:
            raise importlib.metadata.PackageNotFoundError(dist)
        return packages[dist]

    return Machine(which=which, run=run, version=version)


def test_missing_programs_come_with_their_install_hint() -> None:
    report = doctor.diagnose(fake(present=EVERYTHING - {"socat", "codex", "podman"}))
    socat = report.get("socat")
    assert (socat.found, socat.hint) == (False, "apt-get install socat")
    codex = report.get("codex")
    assert not codex.found
    assert codex.hint == "ptb agents install codex"
    assert codex.detail == f"pinned @openai/codex@{CLI_PACKAGES['codex'][0].version}"
    assert report.get("podman").hint == "apt-get install podman"
    git = report.get("git")
    assert (git.found, git.version, git.hint) == (True, "git 1.0", None)
    assert {i.name for i in report.missing} >= {"socat", "codex", "podman"}


def test_installed_program_that_fails_is_not_found() -> None:
    broken = Completed(returncode=1, stderr="node: error while loading shared libraries\n")
    node = doctor.diagnose(fake(answers={("node",): broken})).get("node")
    assert not node.found
    assert node.detail == (
        "/usr/bin/node is installed but failed: node: error while loading shared libraries"
    )


def test_docker_client_without_engine_is_not_usable() -> None:
    no_engine = Completed(
        returncode=1,
        stdout="28.2.2|\n",
        stderr="Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
        "Is the docker daemon running?\n",
    )
    docker = doctor.diagnose(fake(answers={("docker", "version"): no_engine})).get("docker")
    assert not docker.found
    assert docker.version == "client 28.2.2"
    assert docker.detail is not None and docker.detail.startswith("client only, no engine: ")
    assert docker.hint is not None and "systemctl start docker" in docker.hint
    engine = Completed(returncode=0, stdout="28.2.2|28.2.1\n")
    docker = doctor.diagnose(fake(answers={("docker", "version"): engine})).get("docker")
    assert (docker.found, docker.version) == (True, "client 28.2.2, engine 28.2.1")


def test_docker_that_hangs_is_not_usable() -> None:
    hung = subprocess.TimeoutExpired(["docker"], 5)
    docker = doctor.diagnose(fake(answers={("docker", "version"): hung})).get("docker")
    assert not docker.found
    assert docker.detail == "client only, no engine: no answer within 5s"


def test_bwrap_without_user_namespaces_is_not_usable() -> None:
    denied = Completed(returncode=1, stderr="bwrap: setting up uid map: Permission denied\n")
    answers: dict[tuple[str, ...], Answer] = {
        ("bwrap", "--version"): Completed(returncode=0, stdout="bubblewrap 0.8.0\n"),
        ("bwrap", "--unshare-all"): denied,
    }
    bwrap = doctor.diagnose(fake(answers=answers)).get("bwrap")
    assert not bwrap.found
    assert bwrap.version == "bubblewrap 0.8.0"
    assert bwrap.detail == (
        "installed but cannot create namespaces: bwrap: setting up uid map: Permission denied"
    )
    assert bwrap.hint is not None and "unprivileged_userns_clone=1" in bwrap.hint
    ok = doctor.diagnose(fake()).get("bwrap")
    assert (ok.found, ok.detail) == (True, "user namespaces work")
    missing = doctor.diagnose(fake(present=set())).get("bwrap")
    assert (missing.found, missing.hint) == (False, "apt-get install bubblewrap")


def test_one_item_per_gpu_from_nvidia_smi() -> None:
    csv = (
        "0, GPU-aaaa, NVIDIA H100 80GB HBM3, 81559, 0, 0\n"
        "1, GPU-bbbb, NVIDIA H100 80GB HBM3, 81559, 20480, 95\n"
    )
    smi_version = (
        "NVIDIA-SMI version  : 550.54.15\nNVML version        : 550.54\n"
        "DRIVER version      : 550.54.15\nCUDA Version        : 12.4\n"
    )
    answers: dict[tuple[str, ...], Answer] = {
        ("nvidia-smi", "--query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu"): (
            Completed(returncode=0, stdout=csv)
        ),
        ("nvidia-smi", "--version"): Completed(returncode=0, stdout=smi_version),
    }
    report = doctor.diagnose(fake(answers=answers))
    gpus = report.of_kind("gpu")
    assert [(g.name, g.found, g.version) for g in gpus] == [
        ("GPU 0", True, "NVIDIA H100 80GB HBM3"),
        ("GPU 1", True, "NVIDIA H100 80GB HBM3"),
    ]
    assert gpus[1].detail == "81559 MiB, 20480 MiB used, 95% busy, GPU-bbbb"
    assert report.get("nvidia-smi").version == "driver 550.54.15, CUDA 12.4"


def test_no_gpu_or_a_broken_driver_is_one_item() -> None:
    none = doctor.diagnose(fake(present=EVERYTHING - {"nvidia-smi"})).of_kind("gpu")
    assert [(g.name, g.found, g.detail) for g in none] == [("gpu", False, "no NVIDIA GPU found")]
    failed = Completed(returncode=9, stdout="NVIDIA-SMI has failed because it couldn't communicate")
    broken = doctor.diagnose(fake(answers={("nvidia-smi",): failed})).of_kind("gpu")
    assert len(broken) == 1 and not broken[0].found
    assert broken[0].detail is not None and "couldn't communicate" in broken[0].detail


def test_python_packages_from_metadata_with_pip_hints() -> None:
    report = doctor.diagnose(fake(packages={"torch": "2.8.0+cu128", "peft": "0.17.1"}))
    assert (report.get("torch").found, report.get("torch").version) == (True, "2.8.0+cu128")
    trl = report.get("trl")
    assert not trl.found and trl.hint is not None
    assert trl.hint.startswith("pip install ") and "trl" in trl.hint
    vllm = report.get("vllm")
    assert vllm.optional and not vllm.found and vllm not in report.missing


def test_torch_cuda() -> None:
    probe = (Path(sys.executable).name, "-c")
    seen = '{"available": true, "cuda": "12.8", "count": 8}\n'
    cuda = doctor.diagnose(
        fake(answers={probe: Completed(returncode=0, stdout=seen)}, present={"nvidia-smi"})
    ).get("torch CUDA")
    assert (cuda.found, cuda.version) == (True, "CUDA 12.8, 8 device(s)")
    cpu = doctor.diagnose(fake(packages={"torch": "2.8.0+cpu"})).get("torch CUDA")
    assert not cpu.found and cpu.detail == "torch 2.8.0+cpu is a CPU-only build"
    no_driver = doctor.diagnose(fake(present=set())).get("torch CUDA")
    assert not no_driver.found and no_driver.detail == "no NVIDIA driver (no nvidia-smi)"


def test_a_hung_or_broken_probe_does_not_hide_the_others() -> None:
    released = threading.Event()

    def hang(m: Machine) -> list[doctor.DoctorItem]:
        released.wait(60)  # hangs until the test has its answer
        return []

    def boom(m: Machine) -> list[doctor.DoctorItem]:
        raise RuntimeError("boom")

    probes = (
        Probe("slow", "tool", hang, timeout_s=0.1),
        Probe("broken", "tool", boom),
        *doctor.PROBES[:1],
    )
    start = time.monotonic()
    report = doctor.diagnose(fake(), probes)
    released.set()
    assert time.monotonic() - start < 30  # 0.1 s + SLACK_S by design; the hang lasts 60 s
    assert report.get("slow").detail == "no answer within 0.1s"
    assert report.get("broken").detail == "probe failed: RuntimeError: boom"
    assert report.get("host").found


def test_report_is_json_and_renders_grouped() -> None:
    report = doctor.diagnose(fake(present=EVERYTHING - {"socat"}))
    assert DoctorReport.model_validate_json(report.model_dump_json()) == report
    buffer = io.StringIO()
    Console(file=buffer, width=240, color_system=None).print(doctor.render(report))
    text = buffer.getvalue()
    assert "apt-get install socat" in text and "✓" in text and "✗" in text
    kinds = [k for k in doctor.KINDS if k in text]
    assert kinds == list(doctor.KINDS)


def test_diagnose_this_machine() -> None:
    start = time.monotonic()
    report = doctor.diagnose()
    assert time.monotonic() - start < 15
    host = report.get("host")
    assert host.found and host.detail == "no isolation; development only"
    assert {i.kind for i in report.items} == set(doctor.KINDS)
    assert report.get("torch").found


@pytest.mark.parametrize("dist", list(doctor.PYTHON_PACKAGES))
def test_pip_hints_follow_the_project_requirements(dist: str) -> None:
    requirement = doctor._requirement(dist).strip("'")
    assert requirement.replace("_", "-").lower().startswith(dist)


def test_benchmark_data_is_reported_per_benchmark(tmp_path: Path) -> None:
    from tests.fixtures.hub import hf_home
    from tests.fixtures.math_data import write_gsm8k

    with hf_home(tmp_path / "hf"):
        items = {i.name: i for i in doctor._benchmark_data(doctor.Machine())}
        assert not items["gsm8k"].found and items["gsm8k"].optional
        assert items["gsm8k"].hint == "ptb data prefetch --benchmarks gsm8k"
        write_gsm8k(tmp_path / "hf")
        items = {i.name: i for i in doctor._benchmark_data(doctor.Machine())}
        assert items["gsm8k"].found and items["gsm8k"].detail == "cached"
