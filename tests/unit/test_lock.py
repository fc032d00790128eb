"""One harness per run directory."""

import subprocess
import sys
from pathlib import Path

import pytest

from posttrainbench.errors import RunLockedError
from posttrainbench.results.lock import RunLock


def test_second_holder_gets_a_clear_error(tmp_path: Path) -> None:
    with RunLock(tmp_path / ".lock"):
        code = (
            "import sys\nfrom pathlib import Path\n"
            "from posttrainbench.results.lock import RunLock\n"
            "from posttrainbench.errors import RunLockedError\n"
            f"try:\n    RunLock(Path({str(tmp_path / '.lock')!r})).__enter__()\n"
            "except RunLockedError as e:\n    print(e.message); sys.exit(3)\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 3, done.stderr
        assert "being run by another harness" in done.stdout and "pid" in done.stdout
    with RunLock(tmp_path / ".lock"):  # released on exit, reusable
        pass


def test_lock_is_per_open_and_not_reentrant(tmp_path: Path) -> None:
    with RunLock(tmp_path / ".lock"), pytest.raises(RunLockedError):
        RunLock(tmp_path / ".lock").__enter__()
