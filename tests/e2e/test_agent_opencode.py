"""`ptb run --agent opencode` end to end: the real OpenCode 1.18.33 in bwrap, its LLM a fake
OpenAI Chat Completions API behind the run's relay (OpenCode's OpenAI-compatible provider). The
agent stops after its first look; the runner's re-prompt continues the same session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrainbench.agents.trajectory.schema import Trajectory
from posttrainbench.sandbox.relay.episode import Say, standard_steps
from posttrainbench.sandbox.relay.episode.chat import ChatEpisode
from tests.conftest import PtbRunner
from tests.e2e.cli_episode import (
    assert_cli_report_agrees,
    check_episode,
    ensure_installed,
    provider_env,
    run_episode,
)

AGENT = "opencode"
needs_cli = pytest.mark.needs("bwrap-namespaces", "socat", "npm")


@needs_cli
def test_episode(ptb: PtbRunner, tmp_path: Path, cache_dir: Path, tiny_model_dir: Path) -> None:
    ensure_installed(AGENT, cache_dir)
    steps = standard_steps()
    steps.insert(1, Say("I looked at the workspace and stop here."))
    result = run_episode(
        ptb,
        tmp_path,
        agent=AGENT,
        wire=ChatEpisode(),
        env=provider_env("openai"),
        base_var="OPENAI_BASE_URL",
        steps=steps,
        extra_args=("--agent-effort", "low", "--continue-prompts", "1", "--continue-min", "1m"),
    )
    traj = check_episode(result)
    record = result.record
    assert record is not None and record.agent is not None
    assert record.agent_cli is not None and record.agent_cli.version == "1.18.33"
    # OpenCode reports every call it makes (no title call: the session is given a title), at
    # its catalogue's price, which is the relay's.
    assert_cli_report_agrees(record)
    assert {c.function_name for s in traj.steps for c in s.tool_calls or []} == {"bash"}
    # Only streamed Chat Completions calls of the agent loop, at the chosen effort.
    seen = result.upstream.seen
    assert {(s.method, s.path) for s in seen} == {("POST", "/v1/chat/completions")}
    requests = [json.loads(s.body) for s in seen]
    assert all(r["model"] == "gpt-5.5" and r["stream"] is True and r["tools"] for r in requests)
    assert all(r["reasoning_effort"] == "low" for r in requests)
    # The re-prompt continued the conversation: the last call holds both prompts.
    stdout = Trajectory.model_validate_json(
        (result.run_dir / "agent" / "trajectory_stdout.json").read_text()  # the CLI's account
    )
    assert stdout.extra is not None and stdout.extra["launches"] == 2
    assert len(stdout.extra["sessions"]) == 1
    prompts = [m for m in requests[-1]["messages"] if m["role"] == "user"]
    assert len(prompts) == 2
