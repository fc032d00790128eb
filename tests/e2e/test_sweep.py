"""`ptb sweep run` with the real `local` executor on ptb-tiny × arith: runs in parallel slots,
a driver killed mid-way and run again (every run completes once, none lost, none doubled), and
an infrastructure failure at preflight retried while an agent crash is not."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from posttrainbench.records import RunRecord
from posttrainbench.scale.driver import read_tries
from tests.conftest import PtbRunner, ptb_env
from tests.waiting import wait_until


def sweep_file(
    tmp_path: Path, name: str, agents: str, seeds: int, slots: int, extra: str = ""
) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\nbase_models = ["ptb-tiny"]\nbenchmarks = ["arith"]\n'
        f'seeds = {list(range(seeds))}\nbudget = "2m"\nsandbox = "host"\n{extra}\n{agents}\n'
        f'[executor]\nkind = "local"\nslots = {slots}\nretries = 2\n'
    )
    return path


def records(sweep_dir: Path) -> list[RunRecord]:
    return [
        RunRecord.model_validate_json(p.read_text()) for p in sorted(sweep_dir.glob("*/run.json"))
    ]


def run_seconds(record: RunRecord) -> float:
    return sum(s.duration_s or 0 for s in record.stages.values())


def sleeper(seconds: int) -> str:
    return (
        '[[agents]]\nagent = "command"\n'
        f'agent_cmd = "sleep {seconds}; cp -r $PTB_BASE_MODEL_PATH final_model"\n'
    )


SLEEPER = sleeper(20)


def test_local_slots_run_in_parallel(ptb: PtbRunner, tmp_path: Path, tiny_model_dir: Path) -> None:
    # Scheduling is what is checked: the runs stop after collect (the agent's sleep is most of a
    # run), as a sweep whose agents run on GPU nodes and are evaluated later does; runs carried on
    # to the end are test_killed_driver_then_rerun_completes_every_run_once's.
    results = tmp_path / "results"
    started = time.monotonic()
    # the sleep is most of a run (its start is not counted in it): parallelism shows clearly
    done = ptb("sweep", "run", str(sweep_file(tmp_path, "par", sleeper(40), 6, 3)),
               "--results", str(results), "--until", "collect", timeout=900)  # fmt: skip
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = records(results / "par")
    assert len(runs) == 6
    assert all(
        all(r.stages[s].state == "done" for s in ("prepare", "solve", "collect"))
        and r.stages["integrity"].state == "pending"
        for r in runs
    )
    one = sorted(run_seconds(r) for r in runs)[len(runs) // 2]
    print(f"6 runs, 3 slots: wall {wall:.0f} s; one run (median) {one:.0f} s; "
          f"sequential would be ≈ {sum(map(run_seconds, runs)):.0f} s")  # fmt: skip
    assert wall < 0.6 * sum(map(run_seconds, runs))
    assert all(t.state == "done" for t in read_tries(results / "par"))
    status = ptb("sweep", "status", str(results / "par"), "--json")
    assert status.returncode == 0
    assert [(r["status"], r["detail"]) for r in json.loads(status.stdout)["runs"]] == [
        ("interrupted", "stopped after collect")
    ] * 6


def _harnesses(sweep_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "--resume" in cmd and str(sweep_dir) in cmd:
            found.append(proc)
    return found


def _job_logs(sweep_dir: Path) -> dict[str, str]:
    return {f.name: f.read_text() for f in sorted((sweep_dir / ".jobs" / "local").glob("*.err"))}


def _stacks_dumped(sweep_dir: Path) -> int:
    return sum("(most recent call first)" in t for t in _job_logs(sweep_dir).values())


def _dump_stacks(sweep_dir: Path, harnesses: list[psutil.Process]) -> None:
    """`kill -USR1` each harness; wait until its threads' stacks are in its job log."""
    before = _stacks_dumped(sweep_dir)
    for proc in harnesses:
        proc.send_signal(signal.SIGUSR1)
    wanted = before + len(harnesses)
    wait_until(lambda: _stacks_dumped(sweep_dir) >= wanted, "stacks in the job logs", 10)


def _where(sweep_dir: Path) -> str:
    """What a failure message needs: the harnesses left, their runs' stages, their stacks."""
    left = _harnesses(sweep_dir)
    lines = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            lines.append(f"harness {proc.pid} {proc.status()}: {proc.children(recursive=True)}")
    lines += [f"{r.spec.run_id}: {[(k, v.state) for k, v in r.stages.items()]}" for r in records(
        sweep_dir)]  # fmt: skip
    with contextlib.suppress(AssertionError, psutil.Error):
        _dump_stacks(sweep_dir, left)
    lines += [f"--- {name}\n{text[-4000:]}" for name, text in _job_logs(sweep_dir).items()]
    return "\n".join(lines)


def test_killed_driver_then_rerun_completes_every_run_once(
    ptb: PtbRunner, tmp_path: Path, cache_dir: Path, tiny_model_dir: Path
) -> None:
    results = tmp_path / "results"
    path = sweep_file(tmp_path, "kill", SLEEPER, 4, 2)
    argv = [sys.executable, "-m", "posttrainbench", "sweep", "run", str(path),
            "--results", str(results)]  # fmt: skip
    # a harness whose stop hangs ends after this, as nobody is left to SIGKILL it
    env = ptb_env(cache_dir) | {"PTB_STOP_LIMIT_S": "20"}
    driver = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sweep_dir = results / "kill"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        # an agent attempt on record, not only the stage: a kill between the two leaves no
        # attempt to mark interrupted (the run is still resumed correctly)
        solving = [
            r
            for r in records(sweep_dir)
            if r.stages["solve"].state == "running" and r.agent and r.agent.attempts
        ]
        if solving:
            break
        time.sleep(1)
    assert solving, "no run reached the agent"
    # where a stuck harness would be: kill -USR1 (to one past its start-up, which ends on it)
    agents = {r.spec.run_id for r in solving}
    started = [
        p for p in _harnesses(sweep_dir) if any(a in " ".join(p.info["cmdline"]) for a in agents)
    ]
    assert started, "no harness of a run that reached its agent"
    _dump_stacks(sweep_dir, started)
    driver.send_signal(signal.SIGKILL)
    driver.wait(10)
    try:
        wait_until(lambda: _harnesses(sweep_dir) == [], "the harnesses end with their driver", 40)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_where(sweep_dir)}") from None
    forced = [name for name, text in _job_logs(sweep_dir).items() if "the stop took over" in text]
    print(f"harnesses whose stop hung and was ended at the limit: {forced or 'none'}")
    # Carry on up to collect only (agents on GPU nodes, evaluation later), then to the end.
    again = ptb("sweep", "run", str(path), "--results", str(results), "--retry-delay", "0",
                "--until", "collect", timeout=900)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert all(
        r.stages["collect"].state == "done" and r.stages["integrity"].state == "pending"
        for r in records(sweep_dir)
    )
    status = json.loads(ptb("sweep", "status", str(sweep_dir), "--json").stdout)
    assert {(r["status"], r["detail"]) for r in status["runs"]} == {
        ("interrupted", "stopped after collect")
    }
    again = ptb("sweep", "run", str(path), "--results", str(results), "--retry-delay", "0",
                timeout=900)  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    runs = records(sweep_dir)
    assert len(runs) == 4 and len({r.spec.run_id for r in runs}) == 4
    assert all(r.complete and r.outcome is not None for r in runs)
    interrupted = [
        r for r in runs if r.agent and any(a.harness_interrupted for a in r.agent.attempts)
    ]
    assert interrupted, "the killed driver interrupted no run"
    for record in interrupted:  # resumed, not restarted: its first attempt is kept
        assert record.agent is not None and len(record.agent.attempts) >= 2


def test_preflight_failure_is_retried_and_agent_crash_is_not(
    ptb: PtbRunner, tmp_path: Path, tiny_model_dir: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    agents = (
        '[[agents]]\nagent = "command"\nagent_cmd = "exit 3"\n\n'
        '[[agents]]\nagent = "command"\nagent_cmd = "cp -r $PTB_BASE_MODEL_PATH final_model"\n'
        'api_provider = "anthropic"\n'
    )
    path = sweep_file(tmp_path, "retry", agents, 1, 2, extra='network = "open"')
    results = tmp_path / "results"
    sweep_dir = results / "retry"
    listener = socket.socket()
    stop = threading.Event()

    def provider_comes_back() -> None:  # the provider's host answers after the first failure
        while not stop.is_set():
            if any(t.state == "retryable" for t in read_tries(sweep_dir)):
                listener.bind(("127.0.0.1", port))
                listener.listen()
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=provider_comes_back, daemon=True)
    watcher.start()
    env = {"ANTHROPIC_API_KEY": "sk-ant-api03-" + "T" * 40,
           "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}"}  # fmt: skip
    try:
        done = ptb("sweep", "run", str(path), "--results", str(results), "--retry-delay", "2s",
                   env=env, timeout=900)  # fmt: skip
    finally:
        stop.set()
        listener.close()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tries = read_tries(sweep_dir)
    by_run: dict[str, list[str]] = {}
    for t in tries:
        by_run.setdefault(t.run_id, []).append(t.state)
    crash = next(r for r in records(sweep_dir) if r.spec.agent_cmd == "exit 3")
    relay = next(r for r in records(sweep_dir) if r.spec.api_provider == "anthropic")
    assert by_run[crash.spec.run_id] == ["done"]  # the agent's crash is a finished run
    assert crash.agent is not None and crash.agent.exit_reason == "crashed"
    assert by_run[relay.spec.run_id] == ["retryable", "done"]
    assert relay.complete and relay.outcome is not None
    first = next(t for t in tries if t.run_id == relay.spec.run_id)
    assert first.note is not None and "cannot be reached" in first.note
    assert os.environ.get("ANTHROPIC_API_KEY") != env["ANTHROPIC_API_KEY"]


SECRET_PROBE = """
echo PROBE-START
cat {work}/secret.txt
cat {extra}/secret.txt
ls {work}
python - <<'PY'
import glob, os, sys
print("SYSPATH", sys.path)
for entry in sys.path:
    for found in glob.glob(os.path.join(entry or ".", "secret.txt")):
        print("FOUND", found, open(found).read())
PY
cp -r "$PTB_BASE_MODEL_PATH" final_model && rm -f final_model/ptb_build.json
"""


def test_sweep_from_a_folder_with_a_secret_runs_and_hides_it(
    cache_dir: Path, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """The user's folder (cwd of `ptb sweep run`, holding ./results) and PYTHONPATH entries are
    on the launcher's sys.path, never in the sandbox: the run works and no agent reads them."""
    work, extra = tmp_path / "work", tmp_path / "extra"
    secret = f"PTB-SECRET-{os.urandom(8).hex()}"
    for folder in (work, extra):
        folder.mkdir()
        (folder / "secret.txt").write_text(secret)
    probe = SECRET_PROBE.format(work=work, extra=extra)
    agent = f"[[agents]]\nagent = \"command\"\nagent_cmd = '''{probe}'''\n"
    (work / "s.toml").write_text(
        'name = "cwd"\nbase_models = ["ptb-tiny"]\nbenchmarks = ["arith"]\nbudget = "2m"\n'
        f'{agent}[executor]\nkind = "local"\nslots = 1\nretries = 0\n'
    )
    env = {k: v for k, v in ptb_env(cache_dir).items() if k not in ("PTB_SANDBOX", "PTB_RESULTS")}
    done = subprocess.run(
        [sys.executable, "-m", "posttrainbench", "sweep", "run", "s.toml", "--until", "collect"],
        cwd=work, env=env | {"PYTHONPATH": str(extra)}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (record,) = records(work / "results" / "cwd")
    assert record.spec.sandbox == "bwrap"  # the default, isolating
    assert all(record.stages[s].state == "done" for s in ("prepare", "solve", "collect"))
    (run_dir,) = [p.parent for p in (work / "results" / "cwd").glob("*/run.json")]
    log = (run_dir / "agent" / "stdout.log").read_text() + (
        run_dir / "agent" / "stderr.log"
    ).read_text()
    assert "PROBE-START" in log and "SYSPATH" in log, log
    assert f"cannot access '{work}': No such file or directory" in log, log
    assert "FOUND" not in log, log
    for path in (work / "results").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
