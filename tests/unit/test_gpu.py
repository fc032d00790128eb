"""GPU preflight against fake nvidia-smi output and fake probes; the real probe on this CPU box."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from posttrainbench.errors import ConfigError, InfrastructureError
from posttrainbench.sandbox import gpu
from posttrainbench.sandbox.gpu import Completed, GpuInfo, GpuPreflight, GpuPreflightError

H100 = "NVIDIA H100 80GB HBM3"
IDLE = f"0, GPU-aaaa-0000, {H100}, 81559, 0, 0\n1, GPU-bbbb-1111, {H100}, 81559, 4, 0\n"
PROBE_OK = Completed(returncode=0, stdout=json.dumps({"device": H100, "torch": "2.8.0"}) + "\n")


class FakeRunner:
    """Answers nvidia-smi queries with canned CSV and the probe with a canned result."""

    def __init__(
        self,
        gpus: str = IDLE,
        apps: str = "",
        probe: Completed | BaseException = PROBE_OK,
        smi: Completed | BaseException | None = None,
    ) -> None:
        self.gpus, self.apps, self.probe, self.smi = gpus, apps, probe, smi
        self.calls: list[tuple[list[str], Mapping[str, str] | None]] = []

    def __call__(
        self, argv: list[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> Completed:
        self.calls.append((argv, env))
        if argv[0] == sys.executable:
            answer = self.probe
        elif self.smi is not None:
            answer = self.smi
        elif argv[1].startswith("--query-gpu="):
            answer = Completed(returncode=0, stdout=self.gpus)
        else:
            answer = Completed(returncode=0, stdout=self.apps)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    @property
    def probes(self) -> list[Mapping[str, str] | None]:
        return [env for argv, env in self.calls if argv[0] == sys.executable]


@pytest.fixture(autouse=True)
def _no_class_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gpu.CLASSES_ENV, raising=False)


def _refused(run: FakeRunner, gpus: list[int], **kwargs: Any) -> GpuPreflightError:
    with pytest.raises(GpuPreflightError) as err:
        gpu.preflight(gpus, run=run, **kwargs)
    assert "\n" not in err.value.message and err.value.hint
    assert not err.value.result.passed
    return err.value


def test_query_parses_nvidia_smi_csv() -> None:
    run = FakeRunner(
        gpus=IDLE + "2, GPU-cccc, NVIDIA A100-SXM4-80GB, 81920, [N/A], [Not Supported]\n"
    )
    gpus = gpu.query_gpus(run=run)
    assert [g.index for g in gpus] == [0, 1, 2]
    assert gpus[0] == GpuInfo(
        index=0,
        uuid="GPU-aaaa-0000",
        name=H100,
        memory_total_mib=81559,
        memory_used_mib=0,
        utilization_pct=0,
    )
    assert gpus[1].memory_used_mib == 4
    assert (gpus[2].memory_used_mib, gpus[2].utilization_pct) == (None, None)
    argv = run.calls[0][0]
    assert argv[1] == f"--query-gpu={gpu.GPU_QUERY}" and argv[2] == "--format=csv,noheader,nounits"


def test_query_of_compute_apps() -> None:
    run = FakeRunner(apps="GPU-aaaa-0000, 4242, 20480\nGPU-bbbb-1111, 7, [N/A]\n")
    procs = gpu.gpu_processes(run=run)
    assert [(p.gpu_uuid, p.pid, p.used_memory_mib) for p in procs] == [
        ("GPU-aaaa-0000", 4242, 20480),
        ("GPU-bbbb-1111", 7, None),
    ]
    assert gpu.gpu_processes(run=FakeRunner(apps="")) == []


def test_unexpected_nvidia_smi_output_is_one_line() -> None:
    with pytest.raises(InfrastructureError, match="unexpected nvidia-smi output"):
        gpu.query_gpus(run=FakeRunner(gpus=f"0, GPU-a, {H100}, lots, 0, 0\n"))


def test_preflight_passes_idle_h100s_and_probes_each_by_uuid() -> None:
    run = FakeRunner()
    result = gpu.preflight([0, 1], run=run)
    assert result.passed and result.probed
    assert [(c.index, c.name, c.memory_total_mib, c.passed) for c in result.checks] == [
        (0, H100, 81559, True),
        (1, H100, 81559, True),
    ]
    assert all(c.probe_device == H100 and c.probe_s is not None for c in result.checks)
    envs = run.probes
    assert sorted(env["CUDA_VISIBLE_DEVICES"] for env in envs if env) == [
        "GPU-aaaa-0000",
        "GPU-bbbb-1111",
    ]
    assert GpuPreflight.model_validate_json(result.model_dump_json()) == result
    assert result.summary().startswith(f"2 × {H100}: ok")


def test_no_gpu_requested_runs_nothing() -> None:
    run = FakeRunner()
    result = gpu.preflight([], run=run)
    assert result.passed and result.note == "no GPU requested" and result.checks == []
    assert run.calls == []


@pytest.mark.parametrize(
    ("gpus", "apps", "reason"),
    [
        (IDLE, "GPU-bbbb-1111, 4242, 20480\n", "is busy: 1 compute process(es) (pid 4242 using"),
        (IDLE.replace("81559, 4, 0", "81559, 30000, 0"), "", "is busy: 30000 MiB in use"),
        (IDLE.replace("81559, 4, 0", "81559, 4, 97"), "", "is busy: 97% utilised"),
    ],
)
def test_busy_gpu_is_refused_before_any_probe(gpus: str, apps: str, reason: str) -> None:
    run = FakeRunner(gpus=gpus, apps=apps)
    err = _refused(run, [0, 1])
    assert err.message.startswith(f"GPU 1 ({H100}) {reason}")
    assert run.probes == []
    assert [c.passed for c in err.result.checks] == [True, False]


def test_wrong_class_is_refused_with_a_hint() -> None:
    run = FakeRunner(gpus=f"0, GPU-a, {H100}, 81559, 0, 0\n1, GPU-b, NVIDIA A10G, 23028, 0, 0\n")
    err = _refused(run, [1])
    assert err.message == "GPU 1 (NVIDIA A10G) is not an accepted class (H100, H200, A100, B200)"
    assert "PTB_GPU_CLASSES=any" in (err.hint or "")
    _refused(run, [0, 1], accepted=["H200"])


def test_classes_from_argument_or_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    run = FakeRunner(gpus="0, GPU-a, NVIDIA A10G, 23028, 0, 0\n")
    assert gpu.preflight([0], run=run, accepted="any").accepted_classes == ["any"]
    assert gpu.preflight([0], run=run, accepted=["h100", "a10g"]).passed
    monkeypatch.setenv(gpu.CLASSES_ENV, " ANY ")
    assert gpu.preflight([0], run=run).passed
    monkeypatch.setenv(gpu.CLASSES_ENV, "A10,L4")
    assert gpu.preflight([0], run=run).accepted_classes == ["A10", "L4"]
    _refused(run, [0], accepted="H100")  # the argument wins over the environment
    monkeypatch.setenv(gpu.CLASSES_ENV, " , ")
    with pytest.raises(ConfigError):
        gpu.preflight([0], run=run)


def test_missing_gpu_index_is_refused() -> None:
    err = _refused(FakeRunner(), [0, 3])
    assert err.message == "GPU 3 is not present (nvidia-smi lists GPUs: 0, 1)"
    assert [(c.index, c.present) for c in err.result.checks] == [(0, True), (3, False)]


@pytest.mark.parametrize(
    ("probe", "reason"),
    [
        (
            Completed(returncode=1, stderr="Traceback ...\nRuntimeError: CUDA error: ECC error\n"),
            "failed the allocation probe: RuntimeError: CUDA error: ECC error",
        ),
        (
            subprocess.TimeoutExpired(["python"], 120),
            "allocation probe timed out after 120s",
        ),
        (Completed(returncode=0, stdout="warning: something\n"), "allocation probe gave no result"),
    ],
)
def test_probe_failure_or_timeout_is_refused(probe: Completed | Exception, reason: str) -> None:
    err = _refused(FakeRunner(probe=probe), [0])
    assert err.message.startswith(f"GPU 0 ({H100}) {reason}")
    assert err.result.checks[0].reason is not None and reason in err.result.checks[0].reason


def test_several_failures_name_the_first_and_count_the_rest() -> None:
    err = _refused(FakeRunner(probe=Completed(returncode=1, stderr="boom")), [0, 1])
    assert err.message == f"GPU 0 ({H100}) failed the allocation probe: boom; GPU 1 failed too"


def test_probe_can_be_skipped() -> None:
    run = FakeRunner(probe=Completed(returncode=1))
    result = gpu.preflight([0], run=run, probe=False)
    assert result.passed and not result.probed and run.probes == []


def test_missing_or_broken_nvidia_smi_is_an_infrastructure_error() -> None:
    with pytest.raises(InfrastructureError, match="nvidia-smi not found") as err:
        gpu.preflight([0], run=FakeRunner(smi=FileNotFoundError("nvidia-smi")))
    assert "NVIDIA driver" in (err.value.hint or "")
    broken = Completed(
        returncode=9,
        stdout="NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n",
    )
    with pytest.raises(InfrastructureError, match="couldn't communicate"):
        gpu.preflight([0], run=FakeRunner(smi=broken))
    with pytest.raises(InfrastructureError, match="did not answer"):
        gpu.preflight([0], run=FakeRunner(smi=subprocess.TimeoutExpired(["nvidia-smi"], 20)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, []), ("", []), ("none", []), ("0", [0]), ("1,0", [1, 0]), (" 0, 2-4 ", [0, 2, 3, 4])],
)
def test_parse_gpu_list(text: str | None, expected: list[int]) -> None:
    assert gpu.parse_gpu_list(text, run=FakeRunner()) == expected


def test_parse_all_lists_every_gpu() -> None:
    assert gpu.parse_gpu_list("all", run=FakeRunner()) == [0, 1]
    with pytest.raises(InfrastructureError, match="lists no GPU"):
        gpu.parse_gpu_list("ALL", run=FakeRunner(gpus=""))


@pytest.mark.parametrize("text", ["a", "0,,1", "-1", "0;1", "1.5", "3-1", "0,0", "0-2,1", "gpu0"])
def test_junk_gpu_lists_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        gpu.parse_gpu_list(text, run=FakeRunner())
    assert "\n" not in err.value.message and err.value.hint


def test_real_probe_without_cuda_fails_cleanly() -> None:
    """The uuid names no GPU, so CUDA sees none even on a machine that has some."""
    info = GpuInfo(
        index=0,
        uuid="GPU-none",
        name=H100,
        memory_total_mib=81559,
        memory_used_mib=0,
        utilization_pct=0,
    )
    result = gpu.probe_gpu(info, timeout_s=60)
    assert result.device is None
    assert result.error is not None and "CUDA not available" in result.error


class BusRunner:
    """Answers `nvidia-smi --query-gpu=index,pci.bus_id` with canned rows."""

    def __init__(self, rows: str) -> None:
        self.rows = rows

    def __call__(
        self, argv: list[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> Completed:
        assert argv[1] == "--query-gpu=index,pci.bus_id"
        return Completed(returncode=0, stdout=self.rows)


def _driver(tmp_path: Path, minors: dict[str, int]) -> tuple[Path, Path]:
    """A fake /proc/driver/nvidia/gpus and /dev with one node per minor."""
    proc, dev = tmp_path / "proc", tmp_path / "dev"
    dev.mkdir()
    for bus, minor in minors.items():
        (proc / bus).mkdir(parents=True)
        (proc / bus / "information").write_text(
            f"Model: \t\t NVIDIA H200\nBus Location: \t {bus}\nDevice Minor: \t {minor}\n"
        )
        (dev / f"nvidia{minor}").touch()
    return proc, dev


def test_device_nodes_follow_the_driver_minor_not_the_index(tmp_path: Path) -> None:
    # A container given GPUs 2 and 5 of a host: nvidia-smi numbers them 0 and 1.
    proc, dev = _driver(tmp_path, {"0000:3b:00.0": 2, "0000:db:00.0": 5})
    run = BusRunner("0, 00000000:3B:00.0\n1, 00000000:DB:00.0\n")
    nodes = gpu.device_nodes([1, 0], run=run, proc=proc, dev=dev)
    assert nodes == [dev / "nvidia5", dev / "nvidia2"]
    assert gpu.device_nodes([], run=run, proc=proc, dev=dev) == []


def test_device_nodes_refuse_rather_than_hand_out_no_gpu(tmp_path: Path) -> None:
    proc, dev = _driver(tmp_path, {"0000:3b:00.0": 2})
    run = BusRunner("0, 00000000:3B:00.0\n1, 00000000:DB:00.0\n")
    with pytest.raises(InfrastructureError, match="GPU 3 is not present"):
        gpu.device_nodes([3], run=run, proc=proc, dev=dev)
    with pytest.raises(InfrastructureError, match="cannot find the device node of GPU 1") as err:
        gpu.device_nodes([1], run=run, proc=proc, dev=dev)
    assert "0000:db:00.0/information" in err.value.message
    (dev / "nvidia2").unlink()
    with pytest.raises(InfrastructureError, match=r"device node .*nvidia2 does not exist"):
        gpu.device_nodes([0], run=run, proc=proc, dev=dev)
