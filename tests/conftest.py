"""Shared fixtures: an isolated cache (the tiny model is built once per session) and a helper
that runs the real `ptb` CLI as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# Tests never reach a hub; without this, hub lookups retry with backoff before failing.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from posttrainbench.config import Settings, load_settings
from posttrainbench.embedded import tiny_model


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ptb-cache")
    os.environ["PTB_CACHE"] = str(path)
    # Never the user's hub cache: benchmark data and models come from fixtures only.
    os.environ["HF_HOME"] = str(path / "hf")
    os.environ["HF_HUB_CACHE"] = str(path / "hf" / "hub")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(cache_dir: Path) -> Path:
    return tiny_model.ensure_built(cache_dir / "models")


@pytest.fixture
def settings(cache_dir: Path, tmp_path: Path) -> Settings:
    return load_settings(tmp_path / "results")


PtbRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ptb(cache_dir: Path) -> PtbRunner:
    def run(
        *args: str, timeout: float = 600, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = ptb_env(cache_dir) | (env or {})
        return subprocess.run(
            [sys.executable, "-m", "posttrainbench", *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
        )

    return run


def ptb_env(cache_dir: Path) -> dict[str, str]:
    """The environment of a `ptb` subprocess in the tests: isolated cache, short grace. The
    spine's tests run on `host` (PTB_SANDBOX); the sandbox's own tests pass --sandbox."""
    return os.environ | {
        "PTB_SANDBOX": "host",
        "PTB_CACHE": str(cache_dir),
        "HF_HOME": str(cache_dir / "hf"),
        "HF_HUB_CACHE": str(cache_dir / "hf" / "hub"),
        "COLUMNS": "200",
        "PTB_GRACE_S": "3",
        "PTB_MONITOR_S": "2",
    }


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.needs(...)`: a missing component fails the test with its install hint."""
    from tests.needs import require

    for mark in item.iter_markers("needs"):
        require(*mark.args)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e is `e2e`: `pytest -m "not e2e"` is the fast suite."""
    for item in items:
        if "e2e" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.e2e)
