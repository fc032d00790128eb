"""What every stage of a run works on: its directory, its record and the harness's settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from posttrainbench.catalog import MODELS
from posttrainbench.config import Settings
from posttrainbench.records import RunRecord, RunSpec
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.store import save_run


@dataclass
class RunContext:
    paths: RunPaths
    record: RunRecord
    settings: Settings
    judge_model: str | None = None  # `ptb judge --judge-model`: overrides the spec's
    judge_base_url: str | None = None

    @property
    def spec(self) -> RunSpec:
        return self.record.spec

    def save(self) -> None:
        save_run(self.paths.root, self.record)

    def base_model_path(self) -> Path:
        return MODELS.get(self.spec.base_model).locate(self.settings.models_dir)

    def preflight_gpus(self) -> list[int] | None:
        """The GPUs the run was given: those its preflight checked (none for a CPU-only run);
        None for a record without a preflight (written before there was one)."""
        return self.record.gpu_preflight.requested if self.record.gpu_preflight else None
