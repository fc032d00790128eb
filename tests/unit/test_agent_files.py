"""Your own agent: the command's script found (or refused) before the run exists, the agent folder
hashed and snapshotted read-only, labels, and a command's crash told as a command's (with its
stderr's tail), never as an LLM CLI's."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from posttrainbench.agents import agent_files
from posttrainbench.agents.agent_files import AgentDirError, check_command, digest, script_of
from posttrainbench.agents.failure import classify, stderr_tail
from posttrainbench.config import Settings
from posttrainbench.records import RunSpec
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.store import load_run
from posttrainbench.scale.driver import materialize
from posttrainbench.scale.sweep import load_sweep_file, stable_run_id


def _spec(cmd: str, agent_dir: Path | None = None, sandbox: str = "bwrap") -> RunSpec:
    return RunSpec(
        run_id="r", agent="command", agent_cmd=cmd, base_model="ptb-tiny", benchmark="arith",
        budget_s=60, sandbox=sandbox, agent_dir=str(agent_dir) if agent_dir else None,
    )  # fmt: skip


@pytest.fixture
def mine(tmp_path: Path) -> Path:
    folder = tmp_path / "my_agent"
    folder.mkdir()
    (folder / "my_agent.py").write_text("print('hi')\n")
    (folder / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (folder / "lib").mkdir()
    (folder / "lib" / "util.py").write_text("X = 1\n")
    return folder


@pytest.mark.parametrize(
    ("cmd", "found"),
    [
        ("python my_agent.py", ("my_agent.py", False)),
        ("python3 -u /agent/my_agent.py --steps 3", ("/agent/my_agent.py", False)),
        ('python "$PTB_AGENT_DIR/my_agent.py"', ("$PTB_AGENT_DIR/my_agent.py", False)),
        ("FOO=1 exec python -W ignore train.py && echo done", ("train.py", False)),
        ("bash /agent/run.sh", ("/agent/run.sh", False)),
        ("/agent/run.sh --fast", ("/agent/run.sh", True)),
        ("./go.sh", ("./go.sh", True)),
        ("/usr/bin/python3 /abs/agent.py", ("/abs/agent.py", False)),
        ("node agent.js | tee log", ("agent.js", False)),
        ("python -m my_package", None),
        ("python -c 'print(1)'", None),
        ("bash -c 'echo hi'", None),
        ("echo hello > out.txt", None),  # a program on PATH: nothing to check
        ("cd /agent && python x.py", None),  # only the first simple command is read
        ("python 'unbalanced", None),
    ],
)
def test_the_script_of_a_command(cmd: str, found: tuple[str, bool] | None) -> None:
    assert script_of(cmd) == found


def test_a_relative_script_without_agent_dir_is_refused_naming_the_hint() -> None:
    with pytest.raises(AgentDirError) as err:
        check_command(_spec("python my_agent.py"), isolating=True)
    assert "my_agent.py" in err.value.message and "workspace" in err.value.message
    assert "--agent-dir" in (err.value.hint or "")
    assert err.value.exit_code == 2


def test_a_relative_script_that_is_in_agent_dir_says_where_it_will_be(mine: Path) -> None:
    with pytest.raises(AgentDirError) as err:
        check_command(_spec("python my_agent.py", mine), isolating=True)
    assert "/agent/my_agent.py" in (err.value.hint or "")


@pytest.mark.parametrize(
    "cmd",
    [
        "python /agent/my_agent.py",
        "python /agent/lib/util.py",
        'python "$PTB_AGENT_DIR/my_agent.py"',
        "python ${PTB_AGENT_DIR}/my_agent.py",
        "python evaluate.py --limit 5",  # the harness puts it in the workspace
        "bash timer.sh",
        "python -m posttrainbench.agents.noop x y",
    ],
)
def test_scripts_the_sandbox_will_see_pass(mine: Path, cmd: str) -> None:
    check_command(_spec(cmd, mine), isolating=True)


def test_a_script_missing_from_agent_dir_is_refused(mine: Path) -> None:
    with pytest.raises(AgentDirError, match=r"has no missing\.py"):
        check_command(_spec("python /agent/missing.py", mine), isolating=True)
    with pytest.raises(AgentDirError, match="no --agent-dir was given"):
        check_command(_spec("python /agent/my_agent.py"), isolating=True)


def test_a_script_run_directly_must_be_executable(mine: Path) -> None:
    with pytest.raises(AgentDirError, match="not executable"):
        check_command(_spec("/agent/run.sh", mine), isolating=True)
    (mine / "run.sh").chmod(0o755)
    check_command(_spec("/agent/run.sh", mine), isolating=True)


def test_agent_path_needs_an_isolating_sandbox(mine: Path) -> None:
    with pytest.raises(AgentDirError) as err:
        check_command(_spec("python /agent/my_agent.py", mine, "host"), isolating=False)
    assert "$PTB_AGENT_DIR/my_agent.py" in (err.value.hint or "")
    check_command(_spec('python "$PTB_AGENT_DIR/my_agent.py"', mine, "host"), isolating=False)


def test_digest_follows_content_names_modes_and_links(mine: Path) -> None:
    first = digest(mine)
    assert digest(mine) == first
    (mine / "lib" / "util.py").write_text("X = 2\n")
    second = digest(mine)
    assert second != first
    (mine / "run.sh").chmod(0o755)
    third = digest(mine)
    assert third != second
    (mine / "link").symlink_to("lib/util.py")
    assert digest(mine) != third


def test_digest_refuses_fifos_and_missing_folders(mine: Path, tmp_path: Path) -> None:
    with pytest.raises(AgentDirError, match="does not exist"):
        digest(tmp_path / "nope")
    os.mkfifo(mine / "pipe")
    with pytest.raises(AgentDirError, match="pipe is not a file"):
        digest(mine)


def test_snapshot_is_a_verified_read_only_copy(mine: Path, tmp_path: Path) -> None:
    spec = agent_files.pin(_spec("python /agent/my_agent.py", mine), takes_agent_dir=True)
    assert spec.agent_dir == str(mine.resolve()) and spec.agent_dir_sha256 == digest(mine)
    paths = RunPaths(tmp_path / "run")
    agent_files.snapshot(spec, paths)
    copy = paths.agent_files / "my_agent.py"
    assert copy.read_text() == "print('hi')\n"
    assert not copy.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert digest(paths.agent_files) == spec.agent_dir_sha256
    assert (mine / "my_agent.py").stat().st_mode & stat.S_IWUSR  # the original is untouched


def test_a_folder_changed_after_pinning_is_refused(mine: Path, tmp_path: Path) -> None:
    spec = agent_files.pin(_spec("python /agent/my_agent.py", mine), takes_agent_dir=True)
    (mine / "my_agent.py").write_text("print('changed')\n")
    with pytest.raises(AgentDirError, match="changed while it was being copied"):
        agent_files.snapshot(spec, RunPaths(tmp_path / "run"))
    with pytest.raises(AgentDirError, match="changed while the run was being set up"):
        agent_files.pin(spec, takes_agent_dir=True)


def test_agent_dir_is_refused_for_agents_that_do_not_run_it(mine: Path) -> None:
    spec = _spec("x", mine).model_copy(update={"agent": "recipe"})
    with pytest.raises(AgentDirError, match="--agent-dir is for --agent command"):
        agent_files.pin(spec, takes_agent_dir=False)


def test_env_and_mounts_name_the_snapshot(mine: Path, tmp_path: Path) -> None:
    paths = RunPaths(tmp_path / "run")
    spec = _spec("python /agent/my_agent.py", mine)
    assert agent_files.env(spec, paths, isolating=True) == {"PTB_AGENT_DIR": "/agent"}
    assert agent_files.env(spec, paths, isolating=False) == {
        "PTB_AGENT_DIR": str(paths.agent_files)
    }
    (mount,) = agent_files.mounts(spec, paths)
    assert (mount.host, str(mount.guest), mount.writable) == (paths.agent_files, "/agent", False)
    assert agent_files.mounts(_spec("true"), paths) == []


def test_a_command_crash_is_not_an_llm_cli_crash() -> None:
    tail = ["Traceback (most recent call last):", "ValueError: no data"]
    found = classify(1, [], "command_crash", tail)
    assert found is not None and found.kind == "command_crash" and not found.retryable
    assert "LLM" not in found.message
    assert found.message == "the command exited with 1: ValueError: no data"
    assert found.stderr_tail == tail
    silent = classify(2, [], "command_crash", [])
    assert silent is not None and "wrote nothing to stderr" in silent.message
    cli = classify(1, [], "cli_crash", tail)
    assert cli is not None and cli.kind == "cli_crash" and "no LLM call" in cli.message


def test_stderr_tail_keeps_the_last_lines_without_control_characters(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    lines = [f"line {i}" for i in range(30)]
    log.write_text("\n".join(lines) + "\n\n\x1b[31mred\x1b[0m\n" + "x" * 500 + "\n")
    tail = stderr_tail(log)
    assert len(tail) == 10
    assert tail[:8] == lines[-8:]
    assert tail[8] == "[31mred[0m"
    assert tail[9] == "x" * 300
    assert stderr_tail(tmp_path / "absent.log") == []


def test_agent_name_labels_the_configuration() -> None:
    spec = _spec("python /agent/my_agent.py").model_copy(
        update={"agent_name": "mine", "continue_prompts": 2, "agent_dir_sha256": "ab" * 32}
    )
    config = spec.agent_config
    assert config.label() == "mine+c2"
    assert "files abababababab" in config.detail()
    with pytest.raises(ValueError, match="agent_name"):
        RunSpec.model_validate(spec.model_dump() | {"agent_name": "two words"})


def test_stable_ids_of_older_configurations_are_unchanged() -> None:
    spec = RunSpec(
        run_id="pending", sweep="s", agent="noop", base_model="ptb-tiny", benchmark="arith",
        budget_s=60, sandbox="bwrap", suite="ptb-v1.0",
    )  # fmt: skip
    # The id this cell had before agent_name and agent_files were part of a configuration.
    assert stable_run_id(spec) == "noop-ptb-tiny-arith-s0-946915b1"
    named = spec.model_copy(update={"agent_name": "floor"})
    assert stable_run_id(named) != stable_run_id(spec)


def test_sweep_agent_dir_is_relative_to_its_file_and_pinned(mine: Path, tmp_path: Path) -> None:
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(
        'name = "own"\nbase_models = ["ptb-tiny"]\nbenchmarks = ["arith"]\nbudget = "1m"\n'
        'sandbox = "host"\n[[agents]]\nagent = "command"\nagent_name = "mine"\n'
        'agent_dir = "my_agent"\nagent_cmd = \'python "$PTB_AGENT_DIR/my_agent.py"\'\n'
    )
    (run,) = load_sweep_file(sweep_file).expand()
    assert run.agent_dir == str(mine.resolve()) and run.agent_dir_sha256 == digest(mine)
    assert run.agent_config.label() == "mine"
    (mine / "my_agent.py").write_text("print('v2')\n")
    (again,) = load_sweep_file(sweep_file).expand()
    assert again.run_id != run.run_id  # other code, another configuration
    assert json.loads(run.model_dump_json())["agent_dir_sha256"] == run.agent_dir_sha256


def test_a_sweep_snapshots_the_agent_into_every_run(
    mine: Path, tmp_path: Path, settings: Settings
) -> None:
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(
        'name = "own"\nbase_models = ["ptb-tiny"]\nbenchmarks = ["arith"]\nseeds = [0, 1]\n'
        'budget = "1m"\nsandbox = "host"\n[[agents]]\nagent = "command"\n'
        'agent_dir = "my_agent"\nagent_cmd = \'python "$PTB_AGENT_DIR/my_agent.py"\'\n'
    )
    sweep_dir, runs = materialize(load_sweep_file(sweep_file), settings)
    assert len(runs) == 2
    for run in runs:
        record = load_run(sweep_dir / run.run_id)
        assert record.spec.agent_dir_sha256 == digest(mine)
        assert digest(RunPaths(sweep_dir / run.run_id).agent_files) == digest(mine)
