"""`ptb run --agent claude-code` end to end: the real Claude Code CLI 2.1.330 in bwrap, its LLM a
fake Anthropic API behind the run's relay. Also: no API key stops the run before its budget, and
a provider that is overloaded for every call ends the run as a retryable infrastructure failure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrainbench.agents.trajectory.schema import Trajectory
from posttrainbench.records import RunRecord
from posttrainbench.sandbox.relay.episode.anthropic import AnthropicEpisode
from posttrainbench.sandbox.relay.fake import FakeUpstream, Reply
from tests.conftest import PtbRunner
from tests.e2e.cli_episode import (
    assert_cli_report_agrees,
    check_episode,
    ensure_installed,
    provider_env,
    run_episode,
)

AGENT = "claude-code"
BASE_VAR = "ANTHROPIC_BASE_URL"
needs_cli = pytest.mark.needs("bwrap-namespaces", "socat", "npm")


@needs_cli
def test_episode(ptb: PtbRunner, tmp_path: Path, cache_dir: Path, tiny_model_dir: Path) -> None:
    ensure_installed(AGENT, cache_dir)
    result = run_episode(
        ptb,
        tmp_path,
        agent=AGENT,
        wire=AnthropicEpisode(),
        env=provider_env("anthropic"),
        base_var=BASE_VAR,
        extra_args=("--agent-effort", "low"),
    )
    traj = check_episode(result)
    record = result.record
    assert record is not None and record.agent is not None
    assert record.agent_cli is not None and record.agent_cli.version == "2.1.330"
    # Claude Code's own report agrees with the relay's meter, tokens and (priced) cost alike.
    assert_cli_report_agrees(record)
    assert traj.agent.model_name == "claude-opus-4-8"
    assert {c.function_name for s in traj.steps for c in s.tool_calls or []} == {"Bash"}
    requests = [json.loads(s.body) for s in result.upstream.seen if s.body]
    assert requests and all(r["model"] == "claude-opus-4-8" for r in requests)
    assert all(r.get("output_config", {}).get("effort") == "low" for r in requests)


def test_no_api_key_stops_before_the_budget(
    ptb: PtbRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    results = tmp_path / "results"
    proc = ptb(
        "run", "--agent", AGENT, "--base-model", "ptb-tiny", "--benchmark", "arith",
        "--budget", "5m", "--results", str(results),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if "ANTHROPIC_API_KEY" in line]
    assert len(lines) == 1 and "hint" in proc.stderr.lower(), proc.stderr
    for run_json in results.glob("*/*/run.json"):  # if a run directory was made, nothing ran
        record = RunRecord.model_validate_json(run_json.read_text())
        assert record.stages["solve"].state == "pending" and record.agent is None


OVERLOADED = json.dumps(
    {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
).encode()


@needs_cli
def test_overloaded_provider_is_a_retryable_infrastructure_failure(
    ptb: PtbRunner, tmp_path: Path, cache_dir: Path, tiny_model_dir: Path
) -> None:
    ensure_installed(AGENT, cache_dir)
    results = tmp_path / "results"
    with FakeUpstream() as up:
        up.handler = lambda seen: Reply(529, [OVERLOADED], chunked=False)
        proc = ptb(
            "run", "--agent", AGENT, "--base-model", "ptb-tiny", "--benchmark", "arith",
            "--budget", "5m", "--sandbox", "bwrap", "--results", str(results),
            # the CLI retries 10 times by default over ~3 minutes; twice is enough here
            "--pass-env", "CLAUDE_CODE_MAX_RETRIES",
            env=provider_env("anthropic") | {BASE_VAR: up.url, "CLAUDE_CODE_MAX_RETRIES": "2"},
            timeout=400,
        )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (run_json,) = results.glob("*/*/run.json")
    record = RunRecord.model_validate_json(run_json.read_text())
    assert record.failed_stage == "solve"
    error = record.stages["solve"].error
    assert error is not None and error.retryable, error
    assert record.outcome is None and record.metrics is None
    assert record.agent is not None and record.agent.attempts
    failure = record.agent.attempts[-1].failure
    assert failure is not None and failure.kind == "provider_outage" and failure.retryable
    assert len(up.seen) == 3  # the first try and two retries, all through the relay
    traj_path = run_json.parent / "agent" / "trajectory_stdout.json"  # the CLI's own account
    traj = Trajectory.model_validate_json(traj_path.read_text())
    assert [s.source for s in traj.steps] == ["system"] * 4  # launch, 2 retries, the API error
    assert all("529" in s.message for s in traj.steps[1:])


def test_missing_cli_stops_before_the_budget(
    ptb: PtbRunner, tmp_path: Path, cache_dir: Path
) -> None:
    empty = tmp_path / "no-agents"
    empty.mkdir()
    results = tmp_path / "results"
    proc = ptb(
        "run", "--agent", AGENT, "--base-model", "ptb-tiny", "--benchmark", "arith",
        "--budget", "5m", "--results", str(results),
        env=provider_env("anthropic") | {"PTB_AGENTS_DIR": str(empty)},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "@anthropic-ai/claude-code@2.1.330" in proc.stderr
    assert "ptb agents install claude-code" in proc.stderr
    assert not list(results.glob("*/*/run.json"))


@needs_cli
def test_agents_install_and_list(ptb: PtbRunner, cache_dir: Path) -> None:
    done = ptb("agents", "install", AGENT)
    assert done.returncode == 0, done.stderr
    assert "@anthropic-ai/claude-code@2.1.330" in done.stdout
    listed = ptb("agents", "list")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.startswith(AGENT))
    assert "installed: " in line
    unknown = ptb("agents", "install", "noop")
    assert unknown.returncode == 2 and "has no CLI to install" in unknown.stderr
