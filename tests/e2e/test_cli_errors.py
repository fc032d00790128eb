"""Bad input through the real CLI: one line with a hint, exit code 2, never a traceback."""

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from posttrainbench import __version__, runner
from posttrainbench.config import Settings
from posttrainbench.records import RunSpec, new_run_id
from posttrainbench.results.store import load_run, save_run
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
    assert last.startswith("error: ") and "see 'ptb" in last and "--help')" in last
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


SWEEP = 'name = "s"\nbase_models = ["ptb-tiny"]\nbenchmarks = ["arith"]\n'
AGENTS = '[[agents]]\nagent = "noop"\n'


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def _every_command(tmp: Path, port: int) -> list[tuple[list[str], str]]:
    """Each command of `ptb` with input it must refuse, and a part of the one line it says."""
    sweep = tmp / "s.toml"
    files = {
        "typo.toml": SWEEP + 'budget = "1m"\n' + AGENTS + 'agnet_model = "x"\n',
        "key.toml": SWEEP.replace('name = "s"', 'nmae = "s"') + 'budget = "1m"\n' + AGENTS,
        "bare.toml": SWEEP + "budget = 10\n" + AGENTS,
        "gpus.toml": SWEEP
        + 'budget = "1m"\n'
        + AGENTS
        + "[executor]\ngpus = [999]\ngpus_per_run = 1\n",
        "model.toml": SWEEP.replace("ptb-tiny", "Qwen/Qwen3-4B-Base") + 'budget = "1m"\n' + AGENTS,
        "odd.txt": "not a sweep",
    }
    for name, text in files.items():
        (tmp / name).write_text(text)
    sweep.write_text(SWEEP + 'budget = "1m"\n' + AGENTS)
    return [
        ([*RUN[:-1], "10", "--agent", "noop"], "--budget 10: a duration needs its unit"),
        ([*RUN, "--agent", "noop", "--base-model", "Qwen/Qwen3-4B-Base"],
         "not in the local Hugging Face cache"),
        ([*RUN, "--agent", "noop", "--gpus", "999"], "--gpus 999"),
        ([*RUN, "--agent", "noop", "--sandbox", "dockr"], "see `ptb list sandboxes`"),
        ([*RUN, "--agent", "noop", "--max-procs", "0"], "processes: input should be greater"),
        (["run", "--resume", str(tmp / "s.toml")], "not a run directory"),
        (["demo", "--minutes", "0"], "--minutes 0"),
        (["report", str(tmp / "missing")], "is not a directory"),
        (["show", str(tmp)], "not a run directory"),
        (["doctor", "--bogus"], "no such option"),
        (["sweep", "run", str(tmp / "typo.toml")], "did you mean 'agent_model'"),
        (["sweep", "run", str(tmp / "key.toml")], "unknown key 'nmae'; did you mean 'name'"),
        (["sweep", "run", str(tmp / "bare.toml")], 'budget = 10 has no unit'),
        (["sweep", "run", str(tmp / "gpus.toml")], "executor gpus 999"),
        (["sweep", "run", str(tmp / "model.toml")], "not in the local Hugging Face cache"),
        (["sweep", "run", str(sweep), "--retry-delay", "5"], "--retry-delay 5"),
        (["sweep", "status", str(tmp / "odd.txt")], "is a file, not a sweep folder"),
        (["sweep", "status", str(sweep)], "holds no sweep.json"),
        (["agents", "install", "noop"], "has no CLI to install"),
        (["agents", "list", "--bogus"], "no such option"),
        (["eval", str(tmp / "missing"), "--benchmark", "arith"], "not in the local Hugging Face"),
        (["eval", "ptb-tiny", "--benchmark", "gsm8k"], "gsm8k@"),
        (["judge", str(tmp)], "not a run directory"),
        (["site", str(tmp / "missing")], "is not a directory"),
        (["view", "-p", str(port), str(tmp)], f"cannot serve on 127.0.0.1:{port}"),
        (["bundle", str(tmp)], "run.json"),
        (["verify", str(tmp / "missing.tar.zst")], "is not a file"),
        (["import", "reference", str(tmp / "missing")], "is not a directory"),
        (["review", str(tmp), "--decision", "clean", "--why", "x"], "not a run directory"),
        (["baseline", "--models", "nope"], "unknown model 'nope'"),
        (["audit", str(tmp / "missing")], "does not exist"),
        (["data", "prefetch", "--benchmarks", "gsm9k"], "did you mean 'gsm8k'"),
        (["list", "sandboxs"], "did you mean 'sandboxes'"),
    ]  # fmt: skip


def test_every_command_refuses_bad_input_in_one_line(
    ptb: PtbRunner, tmp_path: Path, busy_port: int, tiny_model_dir: Path
) -> None:
    """Every command, with input it must refuse: exit 2, one line on stderr saying what and
    how to fix it, no traceback and no pydantic wording; nothing made in the results folder."""
    results = tmp_path / "results"
    env = {"PTB_RESULTS": str(results), "TMPDIR": str(tmp_path)}
    failures = []
    for args, message in _every_command(tmp_path, busy_port):
        started = time.monotonic()
        done = ptb(*args, env=env, timeout=60)
        took = time.monotonic() - started
        lines = done.stderr.strip().splitlines()
        line = lines[0] if lines else ""
        ok = (
            done.returncode == 2 and len(lines) == 1 and line.startswith("error: ")
            and message in line and "(hint: " in line and took < 20
            and not any(w in done.stderr + done.stdout for w in
                        ("Traceback", "Value error", "Extra inputs", "list sandboxs", "(sha256 )"))
        )  # fmt: skip
        if not ok:
            failures.append(f"{args}: exit {done.returncode} in {took:.1f}s: {done.stderr!r}")
    assert not failures, "\n".join(failures)
    assert not results.exists() or not any(results.rglob("*")), list(results.rglob("*"))


def test_lists_say_plain_words(ptb: PtbRunner) -> None:
    sandboxes = ptb("list", "sandboxes")
    assert sandboxes.returncode == 0, sandboxes.stderr
    assert "Capabilities(" not in sandboxes.stdout
    assert "bwrap      isolation: yes  network policy: yes" in sandboxes.stdout
    doctor = ptb("doctor")
    assert doctor.returncode in (0, 1) and "Traceback" not in doctor.stderr
    assert "(sha256 )" not in doctor.stdout and "not pinned" in doctor.stdout


def test_resume_of_a_finished_run_says_so(ptb: PtbRunner, settings: Settings) -> None:
    """Exit 0: `ptb run --resume` is what sweep jobs run, and a finished run is success."""
    run_id = new_run_id("noop", "ptb-tiny", "arith")
    spec = RunSpec(run_id=run_id, agent="noop", base_model="ptb-tiny", benchmark="arith",
                   budget_s=60, sandbox="host")  # fmt: skip
    run_dir = runner.create_run(spec, settings)
    record = load_run(run_dir)
    for stage in record.stages.values():
        stage.state = "done"
    save_run(run_dir, record)
    before = (run_dir / "run.json").read_bytes()
    done = ptb("run", "--resume", str(run_dir))
    assert done.returncode == 0, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "is already finished: nothing to resume" in line and str(run_dir) in line
    assert (run_dir / "run.json").read_bytes() == before and not (run_dir / "prepare").exists()


def test_sweep_status_takes_the_sweep_file_too(
    ptb: PtbRunner, settings: Settings, tmp_path: Path
) -> None:
    from posttrainbench.scale.driver import materialize
    from posttrainbench.scale.sweep import load_sweep_file

    path = tmp_path / "s.toml"
    path.write_text(SWEEP + 'budget = "1m"\nsandbox = "host"\n' + AGENTS)
    materialize(load_sweep_file(path), settings)
    done = ptb("sweep", "status", str(path), env={"PTB_RESULTS": str(settings.results_dir)})
    assert done.returncode == 0, done.stderr
    assert "sweep s, suite ptb-v1.2: 1 runs (1 queued)" in done.stdout, done.stdout


def test_a_sweep_left_with_failed_runs_says_how_to_retry_them(
    ptb: PtbRunner, settings: Settings, tmp_path: Path
) -> None:
    from posttrainbench.records import ErrorInfo
    from posttrainbench.scale.driver import materialize
    from posttrainbench.scale.sweep import load_sweep_file

    path = tmp_path / "s.toml"
    path.write_text(SWEEP + 'budget = "1m"\nsandbox = "host"\n' + AGENTS)
    sweep_dir, (run,) = materialize(load_sweep_file(path), settings)
    record = load_run(sweep_dir / run.run_id)
    record.stages["prepare"].state = "failed"
    record.stages["prepare"].error = ErrorInfo(type="ConfigError", message="refused key")
    save_run(sweep_dir / run.run_id, record)
    done = ptb("sweep", "run", str(path), "--results", str(settings.results_dir))
    assert done.returncode == 1, done.stderr
    assert "1 run(s) failed" in done.stderr
    assert f"ptb sweep run {path} --retry-failed" in " ".join(done.stderr.split())
