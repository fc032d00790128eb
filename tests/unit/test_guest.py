"""The agent environment an isolating sandbox mounts is the Python installation's own folders:
never the folder the harness was started from nor what a launcher put on sys.path."""

import sys
from pathlib import Path

import pytest

import posttrainbench
from posttrainbench.sandbox import guest


def _visible(mounts: list[guest.Mount], path: Path) -> bool:
    return any(path == m.host or path.is_relative_to(m.host) for m in mounts)


def test_cwd_and_launcher_paths_are_never_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd, extra = tmp_path / "cwd", tmp_path / "pythonpath"
    for folder in (cwd, extra):
        folder.mkdir()
        (folder / "secret.txt").write_text("s3cr3t")
    (cwd / "results").mkdir()  # ./results of a `ptb sweep run` started here
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "path", [str(cwd), "", ".", str(extra), *sys.path])
    mounts = guest.python_mounts([cwd / "results", tmp_path / "cache"])
    assert not _visible(mounts, cwd / "secret.txt") and not _visible(mounts, extra / "secret.txt")
    assert _visible(mounts, Path(posttrainbench.__file__).resolve())  # evaluate.py imports it
    assert _visible(mounts, Path(sys.executable))
    import pydantic  # a dependency in site-packages

    assert _visible(mounts, Path(pydantic.__file__).resolve())
