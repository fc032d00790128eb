"""Red-team under bwrap, where the sandbox's /tmp is the run directory's `agent/tmp` (the spine's
red-team suite runs on `host`, whose /tmp is the host's): test items kept only under /tmp are
frozen and found there, and the agent's `check_data.py` had told it so, by item id and line,
through the scoring service, without one item's text."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from posttrainbench.records import RunRecord
from tests.conftest import ptb_env
from tests.e2e.test_redteam import (  # noqa: F401  (world: a fixture)
    AGENT,
    BASE,
    NO_PROBE,
    _checks,
    world,
)
from tests.fixtures.wordproblems import TEST_ITEMS
from tests.needs import require


def test_test_items_only_in_tmp_are_flagged_and_check_data_said_so(
    world: dict[str, str],  # noqa: F811
    cache_dir: Path,
    tmp_path: Path,
) -> None:
    require("bwrap-namespaces", "socat")

    def ptb(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        full = ptb_env(cache_dir) | env
        command = [sys.executable, "-m", "posttrainbench", *args]
        return subprocess.run(command, text=True, capture_output=True, env=full, timeout=600)

    mine = tmp_path / "agent"  # read-only at /agent inside: the host's paths are not there
    mine.mkdir()
    shutil.copy(AGENT, mine / AGENT.name)
    shutil.copy(world["KIT"], mine / "kit.json")
    cmd = f"{sys.executable} /agent/{AGENT.name} test_items_only_in_tmp /agent/kit.json"
    env = {k: v for k, v in world.items() if k != "KIT"} | NO_PROBE
    done = ptb("run", "--agent", "command", "--agent-dir", str(mine), "--agent-cmd", cmd,
               "--sandbox", "bwrap", "--base-model", BASE, "--benchmark", "gsm8k",
               "--budget", "3m", "--until", "integrity", "--results", str(tmp_path / "r"),
               env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (run_json,) = [p for p in (tmp_path / "r").rglob("run.json") if "workspace" not in p.parts]
    run_dir = run_json.parent
    record = RunRecord.model_validate_json(run_json.read_text())
    assert record.agent and record.agent.exit_reason == "finished", (
        run_dir / "agent" / "stderr.log"
    ).read_text()[-2000:]
    verdict, checks = _checks(run_dir)
    assert verdict.decision == "flagged", verdict
    decon = checks["decontamination"]
    assert decon.status == "failed", decon
    found = {(e.path, e.item) for e in decon.evidence if e.decisive and e.line}
    assert ("tmp/sft_scratch/train.jsonl", "gsm8k-test-0") in found, decon.evidence
    assert all(path == "tmp/sft_scratch/train.jsonl" for path, _ in found)  # nowhere else

    said = (run_dir / "agent" / "tmp" / "check_data.out").read_text()
    status, report = said.split("\n", 1)
    assert status == "1", said  # contaminated
    assert report.startswith("train.jsonl: contaminated"), said
    assert "line 1: test item gsm8k-test-0" in report, said
    for item in TEST_ITEMS:
        assert item["question"][:40] not in report
    (logged,) = [
        json.loads(line)
        for line in (run_dir / "agent" / "data_checks.jsonl").read_text().splitlines()
    ]
    assert logged["verdict"] == "contaminated" and logged["name"] == "train.jsonl"


pytestmark = pytest.mark.e2e
