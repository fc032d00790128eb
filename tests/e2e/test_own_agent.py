"""Your own agent, first time right, through the real CLI under bwrap: the help's example with
--agent-dir is run and evaluated (and cannot touch its files); a command whose script the
sandbox would not see is refused before anything exists; a crash shows its stderr's tail."""

from __future__ import annotations

import html
from pathlib import Path

import pytest

from posttrainbench.agents.agent_files import digest
from posttrainbench.records import RunRecord
from posttrainbench.report.run_page import render_run_page
from tests.conftest import PtbRunner

pytestmark = pytest.mark.needs("bwrap-namespaces")

# Submits the base model unchanged, as noop does, after trying to change its own files.
MY_AGENT = """\
import os, shutil, sys
here = os.path.dirname(os.path.abspath(__file__))
tries = []
for target in (os.path.join(here, "my_agent.py"), os.path.join(here, "new.txt")):
    try:
        with open(target, "a") as f:
            f.write("# changed by the agent")
        tries.append(f"wrote {target}")
    except OSError as exc:
        tries.append(f"refused {target}: {exc.strerror}")
with open("tries.txt", "w") as f:
    f.write("\\n".join(tries) + "\\n")
shutil.copytree(os.environ["PTB_BASE_MODEL_PATH"], "final_model",
                ignore=shutil.ignore_patterns("ptb_build.json"))
print(f"submitted from {here}, prompt on stdin: {len(sys.stdin.read())} chars")
"""

CRASHER = """\
import sys
for i in range(15):
    print(f"progress {i}", file=sys.stderr)
raise SystemExit("my_agent: no training data found in /nowhere")
"""


def _run_args(results: Path, *extra: str) -> list[str]:
    return [
        "run", "--agent", "command", "--base-model", "ptb-tiny", "--benchmark", "arith",
        "--budget", "1m", "--sandbox", "bwrap", "--results", str(results), *extra,
    ]  # fmt: skip


def _record(results: Path) -> tuple[Path, RunRecord]:
    (run_json,) = results.glob("*/*/run.json")
    return run_json.parent, RunRecord.model_validate_json(run_json.read_text())


def test_the_help_example_runs_under_bwrap_and_is_evaluated(ptb: PtbRunner, tmp_path: Path) -> None:
    mine = tmp_path / "my_agent"
    mine.mkdir()
    (mine / "my_agent.py").write_text(MY_AGENT)
    before = digest(mine)
    results = tmp_path / "results"
    cmd = "python /agent/my_agent.py"
    done = ptb(*_run_args(results, "--agent-dir", str(mine), "--agent-cmd", cmd,
                          "--agent-name", "my-agent"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir, record = _record(results)
    assert record.outcome is not None and record.outcome.source == "evaluated", record.outcome
    assert record.spec.agent_dir == str(mine.resolve())
    assert record.spec.agent_dir_sha256 == before == digest(run_dir / "agent" / "files")
    assert record.spec.agent_config.label() == "my-agent"
    assert record.agent is not None and record.agent.exit_reason == "finished"
    tries = (run_dir / "workspace" / "tries.txt").read_text().splitlines()
    assert [t.split(":")[0] for t in tries] == [
        "refused /agent/my_agent.py",  # read-only files, on a read-only mount
        "refused /agent/new.txt",
    ], tries
    assert tries[1].endswith("Read-only file system")
    assert digest(mine) == before  # the originals are as they were
    assert "submitted from /agent" in (run_dir / "agent" / "stdout.log").read_text()
    report = ptb("report", str(results), "--format", "csv")
    assert report.returncode == 0 and "my-agent" in report.stdout


@pytest.mark.parametrize(
    ("cmd", "with_dir", "hint"),
    [
        ("python my_agent.py", False, "--agent-dir"),  # the old help example
        ("python my_agent.py", True, "write /agent/my_agent.py"),
        ("python /agent/other.py", True, "has no other.py"),
    ],
)
def test_a_script_the_sandbox_would_not_see_is_refused_before_anything_exists(
    ptb: PtbRunner, tmp_path: Path, cmd: str, with_dir: bool, hint: str
) -> None:
    mine = tmp_path / "my_agent"
    mine.mkdir()
    (mine / "my_agent.py").write_text(MY_AGENT)
    results = tmp_path / "results"
    extra = ["--agent-dir", str(mine)] if with_dir else []
    done = ptb(*_run_args(results, "--agent-cmd", cmd, *extra), timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "my_agent.py" in lines[0] or "other.py" in lines[0]
    assert hint in lines[0]
    assert not list(results.glob("*/*"))  # no run folder (glob of a missing folder: none)


def test_a_crash_shows_its_stderr_tail_in_run_and_show(ptb: PtbRunner, tmp_path: Path) -> None:
    mine = tmp_path / "my_agent"
    mine.mkdir()
    (mine / "my_agent.py").write_text(CRASHER)
    results = tmp_path / "results"
    done = ptb(*_run_args(results, "--agent-dir", str(mine), "--agent-cmd",
                          "python /agent/my_agent.py", "--until", "solve"))  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    last = "my_agent: no training data found in /nowhere"
    assert "failure: command_crash: the command exited with 1: " + last in done.stderr
    assert "progress 14" in done.stderr and "progress 5" not in done.stderr  # the last 10 lines
    run_dir, record = _record(results)
    assert record.agent is not None
    failure = record.agent.attempts[-1].failure
    assert failure is not None and failure.kind == "command_crash"
    assert failure.stderr_tail == [*(f"progress {i}" for i in range(6, 15)), last]
    shown = ptb("show", str(run_dir))
    assert shown.returncode == 0, shown.stderr
    assert "command_crash" in shown.stdout and last in shown.stdout
    assert "progress 6" in shown.stdout
    assert "LLM call" not in shown.stdout and "cli_crash" not in shown.stdout
    page = render_run_page(run_dir)
    assert "agent failure" in page and html.escape(last) in page and "progress 6" in page
