"""Settings from the environment (PTB_*) and the directories they point at.

Precedence: explicit CLI option > PTB_* environment variable > default below.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from posttrainbench.errors import ConfigError


def _default_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "posttrainbench"


class Settings(BaseModel):
    """Where ptb keeps things. Read once per command via `load_settings()`."""

    results_dir: Path = Field(description="Root of all run directories.")
    cache_dir: Path = Field(description="Built models, generated data, measured baselines.")
    grace_s: float = Field(description="Seconds between SIGTERM and SIGKILL at the deadline.")
    monitor_s: float = Field(description="Seconds between resource samples in monitor.csv.")
    collect_max_bytes: int = Field(
        description="Largest final_model collected (PTB_COLLECT_MAX_GB)."
    )
    collect_max_files: int = Field(description="Most files in a collected final_model.")
    agent_log_max_bytes: int = Field(description="Cap of each agent log (PTB_AGENT_LOG_MAX_MB).")
    eval_timeout_s: float | None = Field(
        description="Evaluation time limit for every benchmark (PTB_EVAL_TIMEOUT_S); None: each "
        "benchmark's own."
    )
    bundle_max_bytes: int = Field(
        default=64 * 2**30, description="Most bytes `ptb verify` extracts (PTB_BUNDLE_MAX_GB)."
    )
    bundle_max_member_bytes: int = Field(
        default=32 * 2**30, description="Largest file it extracts (PTB_BUNDLE_MAX_MEMBER_GB)."
    )
    bundle_max_files: int = Field(
        default=10000, description="Most files it extracts (PTB_BUNDLE_MAX_FILES)."
    )
    bundle_max_ratio: float = Field(
        default=100.0,
        description="Most bytes extracted per compressed byte read (PTB_BUNDLE_MAX_RATIO).",
    )
    memorisation_probe: bool = Field(
        default=True,
        description="Run integrity's memorisation probe (PTB_MEMORISATION_PROBE=0: skip it, "
        "recorded as skipped with this reason; it is evidence, never decisive).",
    )

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def data_dir(self) -> Path:
        return self.cache_dir / "data"

    @property
    def baselines_dir(self) -> Path:
        return self.cache_dir / "baselines"


def hub_cache() -> Path:
    """The Hugging Face hub cache as the environment says now (HF_HUB_CACHE, else
    HF_HOME/hub); huggingface_hub itself reads these once, at import."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "huggingface"
    )
    return Path(home) / "hub"


def _number(name: str, default: str) -> float:
    raw = os.environ.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a number", f"unset it or use e.g. {default}"
        ) from None
    if value <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive", f"unset it or use e.g. {default}")
    return value


def _switch(name: str) -> bool:
    raw = os.environ.get(name, "1").strip().lower()
    if raw not in ("0", "1", "false", "true", "off", "on"):
        raise ConfigError(f"{name}={raw!r} is not a switch", "unset it, or use 0 or 1")
    return raw in ("1", "true", "on")


def load_settings(results_dir: Path | None = None) -> Settings:
    env = os.environ
    timeout = env.get("PTB_EVAL_TIMEOUT_S")
    return Settings(
        results_dir=Path(results_dir or env.get("PTB_RESULTS", "results")).expanduser().resolve(),
        cache_dir=Path(env.get("PTB_CACHE", _default_cache())).expanduser().resolve(),
        grace_s=_number("PTB_GRACE_S", "10"),
        monitor_s=_number("PTB_MONITOR_S", "10"),
        collect_max_bytes=int(_number("PTB_COLLECT_MAX_GB", "64") * 2**30),
        collect_max_files=int(_number("PTB_COLLECT_MAX_FILES", "2000")),
        agent_log_max_bytes=int(_number("PTB_AGENT_LOG_MAX_MB", "50") * 2**20),
        eval_timeout_s=_number("PTB_EVAL_TIMEOUT_S", "1") if timeout is not None else None,
        bundle_max_bytes=int(_number("PTB_BUNDLE_MAX_GB", "64") * 2**30),
        bundle_max_member_bytes=int(_number("PTB_BUNDLE_MAX_MEMBER_GB", "32") * 2**30),
        bundle_max_files=int(_number("PTB_BUNDLE_MAX_FILES", "10000")),
        bundle_max_ratio=_number("PTB_BUNDLE_MAX_RATIO", "100"),
        memorisation_probe=_switch("PTB_MEMORISATION_PROBE"),
    )
