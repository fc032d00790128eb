"""Bad input through the real CLI: one line with a hint, exit code 2, never a traceback."""

from pathlib import Path

import pytest

from tests.conftest import PtbRunner

RUN = ["run", "--base-model", "ptb-tiny", "--benchmark", "arith", "--budget", "1m"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--agent", "nope", "--base-model", "ptb-tiny", "--benchmark", "arith"],
         "unknown agent 'nope'"),
        (["run", "--agent", "noop", "--base-model", "Qwen3-1.7B", "--benchmark", "arith"],
         "unknown model 'Qwen3-1.7B'"),
        (["run", "--agent", "noop", "--base-model", "ptb-tiny", "--benchmark", "gsm9k"],
         "did you mean 'gsm8k'"),
        (["run", "--agent", "noop", "--base-model", "ptb-tiny", "--benchmark", "gsm8k"],
         "not yet evaluable"),
        ([*RUN[:-1], "ten hours", "--agent", "noop"], "malformed duration"),
        ([*RUN, "--agent", "command"], "needs a command"),
        ([*RUN, "--agent", "noop", "--sandbox", "docker"], "unknown sandbox 'docker'"),
        (["report", "/nonexistent/results"], "is not a directory"),
        (["run", "--resume", "/tmp"], "not a run directory"),
    ],
)  # fmt: skip
def test_one_line_error_with_hint(ptb: PtbRunner, args: list[str], message: str) -> None:
    done = ptb(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and message in lines[0] and "hint: " in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_unwritable_results_dir(ptb: PtbRunner, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = ptb(*RUN, "--agent", "noop", "--results", str(blocker / "results"))
    assert done.returncode == 2
    assert "not writable" in done.stderr and "--results" in done.stderr
    assert "Traceback" not in done.stderr
