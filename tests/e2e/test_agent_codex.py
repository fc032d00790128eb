"""`ptb run --agent codex` end to end: the real Codex CLI 0.169.0 in bwrap, its LLM a fake
OpenAI Responses API behind the run's relay, plain HTTP streaming (no WebSocket). The agent is
re-prompted once after it stops: `codex exec resume --last` continues the same conversation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrainbench.agents.codex import DEFAULT_MODEL
from posttrainbench.agents.trajectory.schema import Trajectory
from posttrainbench.sandbox.relay.episode.responses import ResponsesEpisode
from tests.conftest import PtbRunner
from tests.e2e.cli_episode import check_episode, ensure_installed, provider_env, run_episode

AGENT = "codex"
needs_cli = pytest.mark.needs("bwrap-namespaces", "socat", "npm")


@needs_cli
def test_episode(ptb: PtbRunner, tmp_path: Path, cache_dir: Path, tiny_model_dir: Path) -> None:
    ensure_installed(AGENT, cache_dir)
    result = run_episode(
        ptb,
        tmp_path,
        agent=AGENT,
        wire=ResponsesEpisode(),
        env=provider_env("openai"),
        base_var="OPENAI_BASE_URL",
        extra_args=("--agent-effort", "low", "--continue-prompts", "1", "--continue-min", "1m"),
    )
    traj = check_episode(result)
    record = result.record
    assert record is not None and record.agent is not None
    assert record.agent_cli is not None and record.agent_cli.version == "0.169.0"
    assert [a.continuation for a in record.agent.attempts] == [0, 1]
    stdout = Trajectory.model_validate_json(
        (result.run_dir / "agent" / "trajectory_stdout.json").read_text()  # the CLI's account
    )
    assert stdout.extra is not None and len(stdout.extra["threads"]) == 1  # one conversation
    # Codex reports its tokens per turn (not per call): they agree with the relay's meter.
    cli, relay = record.agent.cli_usage, record.agent.api_usage
    assert cli is not None and relay is not None
    assert (cli.input_tokens, cli.output_tokens, cli.cached_tokens) == (
        relay.input_tokens,
        relay.output_tokens,
        relay.cached_tokens,
    )
    assert record.agent.usage_check is not None and record.agent.usage_check.startswith("agree")
    assert {c.function_name for s in stdout.steps for c in s.tool_calls or []} == {
        "command_execution"
    }
    names = {c.function_name for s in traj.steps for c in s.tool_calls or []}  # the model's own
    assert "exec_command" in names and names <= {"exec_command", "write_stdin"}, names
    # Every request was a streamed Responses call over HTTP: no WebSocket upgrade, no side calls.
    seen = result.upstream.seen
    assert {(s.method, s.path) for s in seen} == {("POST", "/v1/responses")}
    assert not any(s.header("upgrade") for s in seen)
    requests = [json.loads(s.body) for s in seen]
    assert all(r["model"] == DEFAULT_MODEL and r["stream"] is True for r in requests)
    assert all(r["reasoning"]["effort"] == "low" for r in requests)
    assert not any(t.get("type") == "web_search" for t in requests[0]["tools"])
    resumed = [i for i in requests[-1]["input"] if i.get("type") == "function_call_output"]
    assert len(resumed) >= 4  # the re-prompt's request holds the first launch's tool results
