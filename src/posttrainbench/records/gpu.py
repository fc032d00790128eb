"""The GPU preflight of a run: what the harness checked of each GPU before the agent started."""

from __future__ import annotations

from pydantic import Field

from posttrainbench.records.base import Record


class GpuProcess(Record):
    """One row of `nvidia-smi --query-compute-apps`."""

    gpu_uuid: str
    pid: int
    used_memory_mib: int | None


class GpuCheck(Record):
    """The preflight of one requested GPU."""

    index: int
    present: bool
    uuid: str | None = None
    name: str | None = None
    memory_total_mib: int | None = None
    memory_used_mib: int | None = None
    utilization_pct: int | None = None
    processes: list[GpuProcess] = Field(default_factory=list)
    probe_s: float | None = Field(default=None, description="Seconds the allocation probe took.")
    probe_device: str | None = Field(
        default=None, description="Device name torch saw in the probe."
    )
    passed: bool = Field(description="Passed every check that ran on it.")
    reason: str | None = Field(default=None, description="Why it failed, if it did.")


class GpuPreflight(Record):
    """What the harness checked of the run's GPUs before the agent started."""

    requested: list[int] = Field(description="GPU indices as nvidia-smi numbers them.")
    accepted_classes: list[str] = Field(description="Name parts accepted, or ['any'].")
    max_used_mib: int
    max_util_pct: int
    probed: bool = Field(description="Whether the allocation probe was asked for.")
    passed: bool
    note: str | None = None
    checks: list[GpuCheck] = Field(default_factory=list)
    duration_s: float = 0.0

    def summary(self) -> str:
        if not self.requested:
            return self.note or "no GPU requested"
        names = sorted({c.name or "?" for c in self.checks})
        state = "ok" if self.passed else "FAILED"
        return f"{len(self.requested)} × {', '.join(names)}: {state} in {self.duration_s:.1f}s"
