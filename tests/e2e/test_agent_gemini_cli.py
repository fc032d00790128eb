"""`ptb run --agent gemini-cli` end to end: the real Gemini CLI 0.61.0 in bwrap, its LLM a fake
Gemini API behind the run's relay, scripting a short post-training episode through the CLI's
`run_shell_command` tool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posttrainbench.sandbox.relay.episode.gemini import GeminiEpisode
from tests.conftest import PtbRunner
from tests.e2e.cli_episode import check_episode, ensure_installed, provider_env, run_episode

AGENT = "gemini-cli"
needs_cli = pytest.mark.needs("bwrap-namespaces", "socat", "npm")


@needs_cli
def test_episode(ptb: PtbRunner, tmp_path: Path, cache_dir: Path, tiny_model_dir: Path) -> None:
    ensure_installed(AGENT, cache_dir)
    result = run_episode(
        ptb,
        tmp_path,
        agent=AGENT,
        wire=GeminiEpisode(),
        env=provider_env("gemini"),
        base_var="GOOGLE_GEMINI_BASE_URL",
        extra_args=("--agent-effort", "low"),
    )
    traj = check_episode(result)
    record = result.record
    assert record is not None and record.agent is not None
    assert record.agent_cli is not None and record.agent_cli.version == "0.61.0"
    # Gemini CLI's own token report agrees with the relay's meter (it reports no cost).
    cli, relay = record.agent.cli_usage, record.agent.api_usage
    assert cli is not None and relay is not None
    assert (cli.input_tokens, cli.output_tokens, cli.cached_tokens) == (
        relay.input_tokens,
        relay.output_tokens,
        relay.cached_tokens,
    )
    assert record.agent.usage_check is not None and record.agent.usage_check.startswith("agree")
    assert traj.agent.model_name == "gemini-3.1-pro-preview"
    assert {c.function_name for s in traj.steps for c in s.tool_calls or []} == {
        "run_shell_command"
    }
    loop = [json.loads(s.body) for s in result.upstream.seen if ":streamGenerateContent" in s.path]
    assert loop and all(
        r["generationConfig"]["thinkingConfig"]["thinkingLevel"] == "LOW" for r in loop
    )
