"""Agent logs are capped per run; the rest is counted, never written."""

import subprocess
from pathlib import Path

from posttrainbench.sandbox.logcap import CappedLog


def _write(log: CappedLog, nbytes: int) -> None:
    subprocess.run(["head", "-c", str(nbytes), "/dev/zero"], stdout=log.write_fd, check=True)


def test_cap_keeps_the_first_bytes_and_counts_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "stdout.log"
    with CappedLog(path, max_bytes=1000) as log:
        _write(log, 5000)
    assert path.stat().st_size == 1000
    assert (log.stats.kept_bytes, log.stats.dropped_bytes) == (1000, 4000)
    with CappedLog(path, max_bytes=1500) as again:  # a resumed attempt appends up to the cap
        _write(again, 800)
    assert path.stat().st_size == 1500
    assert (again.stats.kept_bytes, again.stats.dropped_bytes) == (500, 300)
