"""Settings from the environment (PTB_*) and the directories they point at.

Precedence: explicit CLI option > PTB_* environment variable > default below.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field


def _default_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "posttrainbench"


class Settings(BaseModel):
    """Where ptb keeps things. Read once per command via `load_settings()`."""

    results_dir: Path = Field(description="Root of all run directories.")
    cache_dir: Path = Field(description="Built models, generated data, measured baselines.")
    grace_s: float = Field(description="Seconds between SIGTERM and SIGKILL at the deadline.")
    monitor_s: float = Field(description="Seconds between resource samples in monitor.csv.")

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def data_dir(self) -> Path:
        return self.cache_dir / "data"

    @property
    def baselines_dir(self) -> Path:
        return self.cache_dir / "baselines"


def load_settings(results_dir: Path | None = None) -> Settings:
    env = os.environ
    return Settings(
        results_dir=Path(results_dir or env.get("PTB_RESULTS", "results")).expanduser().resolve(),
        cache_dir=Path(env.get("PTB_CACHE", _default_cache())).expanduser().resolve(),
        grace_s=float(env.get("PTB_GRACE_S", "10")),
        monitor_s=float(env.get("PTB_MONITOR_S", "10")),
    )
