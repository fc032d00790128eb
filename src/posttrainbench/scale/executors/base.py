"""The executor contract: run a sweep's jobs on an engine, and say when each one ended.

A job is one `ptb run --resume RUN_DIR` on a run directory the sweep created up front, so
nothing in-process travels to a node: any engine that can run a command on a machine that sees
the results folder can run a sweep. The engine schedules (slots, GPUs, queues, retries of its
own); the executor never re-implements that. The driver (`scale/driver.py`) decides what to run
and what to retry, from the run directories' records.
"""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class ExecutorConfig(BaseModel):
    """`[executor]` of a sweep file."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(
        default="local", description="Executor registry name: local, slurm, ray, htcondor."
    )
    slots: int = Field(default=1, ge=1, description="local: runs at the same time.")
    gpus: list[int] = Field(default_factory=list, description="local: the pool of GPU indices.")
    gpus_per_run: int = Field(
        default=0, ge=0, description="GPUs each run gets (0: none, CPU only)."
    )
    cpus_per_run: int = Field(default=4, ge=1)
    mem_gb_per_run: float = Field(default=32, gt=0)
    retries: int = Field(
        default=2, ge=0, description="Reruns of an infrastructure failure per run."
    )
    time_margin_s: int = Field(
        default=1800,
        ge=0,
        description="Engine time limit = budget + evaluation timeout + this margin.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Engine-specific settings (local: grace_s; slurm: partition, account, qos, "
        "array_parallelism; ray: address; htcondor: requirements, universe …).",
    )


@dataclass(frozen=True)
class Job:
    run_id: str
    run_dir: Path
    gpus: int  # GPUs this run needs
    time_limit_s: int  # what the engine should allow the job, all stages included
    command: tuple[str, ...] | None = None  # None: `ptb run --resume RUN_DIR` (tests set one)
    until: str | None = None  # stop the run after this stage (`ptb sweep run --until`)

    @property
    def argv(self) -> list[str]:
        """The job's command: the harness resuming its run from the first unfinished stage."""
        if self.command is not None:
            return list(self.command)
        # -P: the folder the sweep was started from never goes on the harness's sys.path.
        argv = [sys.executable, "-P", "-m", "posttrainbench", "run", "--resume", str(self.run_dir)]
        return argv + (["--until", self.until] if self.until else [])


@dataclass
class Finished:
    job: Job
    returncode: int | None  # None: the engine lost the job (node failure, preemption …)
    engine_id: str | None = None  # slurm job id, ray task id, condor cluster.proc, local pid
    node: str | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Executor(ABC):
    name: ClassVar[str]

    def __init__(self, config: ExecutorConfig, sweep_dir: Path) -> None:
        self.config = config
        self.sweep_dir = sweep_dir

    @classmethod
    def check_config(cls, config: ExecutorConfig) -> None:
        """Raise ConfigError for what this engine can never run (GPUs the machine lacks), before
        any folder of the sweep is created."""
        return None

    def check(self) -> None:
        """Raise MissingDependencyError (with an install hint) if the engine is not usable."""
        return None

    def prepare(self, jobs: Sequence[Job]) -> None:
        """Before `check()`: write what a user could submit by hand (htcondor's submit file)."""
        return None

    def avoid_gpus(self, gpus: Sequence[int], why: str) -> None:
        """The harness's preflight refused these GPUs of a job that ended (another process holds
        them, or they are broken). An engine that places runs on GPUs itself keeps the next runs
        off them for a while; one that does not (a cluster scheduler) ignores this."""
        return None

    @abstractmethod
    def run(self, jobs: Sequence[Job]) -> Iterator[Finished]:
        """Run every job as the engine schedules them; yield each one as it ends. Blocking; a
        job's logs go under `sweep_dir/.jobs/<engine>/`."""
