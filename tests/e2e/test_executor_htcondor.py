"""The htcondor executor on a real HTCondor pool: trivial jobs submitted through the bindings to
the schedd of this machine, polled until they end. Skipped where no schedd can be located (no
HTCondor daemon can run on the CI machines: only the bindings are on PyPI). The sweep folder
must be on a file system the execute nodes see: set PTB_HTCONDOR_SHARED_DIR to one, else the
test's temporary folder is used (right for a single-machine "personal" pool).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from posttrainbench.scale.executors.base import ExecutorConfig, Job
from posttrainbench.scale.executors.htcondor import HTCondorExecutor, bindings


@pytest.fixture
def executor(tmp_path: Path) -> HTCondorExecutor:
    htcondor = bindings()
    if htcondor is None:
        pytest.fail("the HTCondor Python bindings are missing: pip install -r requirements-dev.txt")
    try:
        htcondor.Schedd().query(constraint="false", projection=["ProcId"])
    except Exception as exc:
        pytest.skip(f"no HTCondor schedd reachable here: {exc}")
    shared = os.environ.get("PTB_HTCONDOR_SHARED_DIR")
    root = Path(tempfile.mkdtemp(dir=shared)) if shared else tmp_path
    config = ExecutorConfig(kind="htcondor", cpus_per_run=1, mem_gb_per_run=0.25)
    config.options["poll_s"] = 1
    return HTCondorExecutor(config, root / "e2e sweep")


def test_trivial_jobs_end_with_their_exit_codes(executor: HTCondorExecutor) -> None:
    py = sys.executable
    script = "import os, sys; print(os.environ.get('PTB_GPUS')); sys.exit(int(sys.argv[1]))"
    jobs = [
        Job(f"r{code}", executor.sweep_dir / f"r {code}", 0, 600, (py, "-c", script, str(code)))
        for code in (0, 1, 3)
    ]
    results = {f.job.run_id: f for f in executor.run(jobs)}
    assert {k: f.returncode for k, f in results.items()} == {"r0": 0, "r1": 1, "r3": 3}
    for f in results.values():
        assert f.engine_id and "." in f.engine_id
        cluster = f.engine_id.split(".")[0]
        out = executor.job_dir / f"{f.job.run_id}.{cluster}.out"
        assert out.read_text().strip() == "none"  # CPU-only jobs get PTB_GPUS=none
    assert (executor.job_dir / "condor.log").is_file()
