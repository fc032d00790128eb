"""Bad input through the real CLI: one line with a hint, exit code 2, never a traceback."""

import os
from pathlib import Path

import pytest

from posttrainbench import __version__
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
         "not in the local Hugging Face cache"),
        ([*RUN[:-1], "ten hours", "--agent", "noop"], "malformed duration"),
        ([*RUN, "--agent", "command"], "needs a command"),
        ([*RUN, "--agent", "noop", "--sandbox", "dockr"], "unknown sandbox 'dockr'"),
        (
            [*RUN, "--agent", "noop", "--sandbox", "docker"],
            "docker",
        ),
        ([*RUN, "--agent", "noop", "--sandbox", "host", "--network", "none"], "cannot restrict"),
        (["report", "/nonexistent/results"], "is not a directory"),
        (["run", "--resume", "/tmp"], "not a run directory"),
        ([*RUN[:-1], "0.4s", "--agent", "noop"], "under one second"),
        ([*RUN[:-1], "-5m", "--agent", "noop"], "must be positive"),
        ([*RUN[:-1], "200h", "--agent", "noop"], "--allow-long"),
        ([*RUN, "--agent", "noop", "--eval-timeout", "soon"], "--eval-timeout"),
        ([*RUN, "--agent", "noop", "--pass-env", "A=b"], "not an environment variable name"),
        ([*RUN, "--agent", "noop", "--sweep", "../x"], "not a plain folder name"),
        ([*RUN, "--agent", "noop", "--sweep", "workspace"], "is reserved"),
        (["show", "/tmp"], "not a run directory"),
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


@pytest.mark.parametrize(
    "args",
    [
        ["list"],
        ["run", "--seed", "abc"],
        ["report", "x", "--format", "html"],
        ["--bogus"],
        ["nosuchcmd"],
        ["run", "--resume-policy", "sometimes"],
        [],
    ],
)
def test_usage_error_is_one_line_exit_2(ptb: PtbRunner, args: list[str]) -> None:
    done = ptb(*args)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: ") and "(hint: see 'ptb" in last and "--help')" in last
    if args:  # a bare `ptb` prints the help first (on stdout), then the error line
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    else:
        assert "Usage: ptb" in done.stdout and "run" in done.stdout


def test_help_and_version_exit_0(ptb: PtbRunner) -> None:
    done = ptb("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"ptb {__version__}"
    for args in (["--help"], ["run", "--help"], ["show", "--help"]):
        done = ptb(*args)
        assert done.returncode == 0, done.stderr
        assert "Examples:" in done.stdout
    assert "--resume-policy" in ptb("run", "--help").stdout


def _broken_bwrap(tmp_path: Path) -> dict[str, str]:
    """An environment where bwrap exists but cannot make namespaces (as in many containers), and
    no PTB_SANDBOX chooses for the user."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PTB_SANDBOX": ""}


def test_no_isolating_sandbox_refuses_before_anything_starts(
    ptb: PtbRunner, tmp_path: Path
) -> None:
    env = _broken_bwrap(tmp_path)
    results = tmp_path / "results"
    sweep = tmp_path / "s.toml"
    sweep.write_text(
        'name = "s"\nbase_models = ["ptb-tiny"]\nbenchmarks = ["arith"]\nbudget = "1m"\n'
        '[[agents]]\nagent = "noop"\n'
    )
    for args in ([*RUN, "--agent", "noop"], ["sweep", "run", str(sweep)], ["demo"]):
        done = ptb(*args, "--results", str(results), env=env)
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith("error: no isolating sandbox works here"), line
        assert "setting up uid map: Permission denied" in line  # the probe's own error
        fixes = ("install bubblewrap", "kernel.unprivileged_userns_clone=1",
                 "kernel.apparmor_restrict_unprivileged_userns=0", "--sandbox host")  # fmt: skip
        assert all(fix in line for fix in fixes), line
        assert not results.exists() or not any(results.iterdir()), list(results.rglob("*"))


def test_host_chosen_knowingly_runs_and_is_reported_unisolated(
    ptb: PtbRunner, tmp_path: Path
) -> None:
    env = _broken_bwrap(tmp_path)
    results = tmp_path / "results"
    done = ptb(*RUN, "--agent", "noop", "--sandbox", "host", "--results", str(results), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_json,) = results.rglob("run.json")
    shown = ptb("show", str(run_json.parent), env=env)
    assert shown.returncode == 0 and "UNISOLATED" in shown.stdout, shown.stdout + shown.stderr
    report = ptb("report", str(results), env=env)
    assert report.returncode == 0, report.stderr
    assert "no (host)" in report.stdout and "Unisolated rows" in report.stdout, report.stdout
