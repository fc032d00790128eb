"""Runs a real agent CLI through `ptb run` against a fake provider that scripts a short, real
post-training episode (look, check the timer, train, save final_model, evaluate on 20 items).

    result = run_episode(ptb, tmp_path, agent="claude-code", wire=AnthropicEpisode(),
                         env={"ANTHROPIC_API_KEY": KEY}, base_var="ANTHROPIC_BASE_URL")
    check_episode(result, secrets=[KEY])
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from posttrainbench.agents import get_agent
from posttrainbench.agents.install import install
from posttrainbench.agents.trajectory.schema import Trajectory
from posttrainbench.config import load_settings
from posttrainbench.records import CheckResult, RunRecord
from posttrainbench.sandbox.relay.episode import Episode, EpisodeWire, Step, standard_steps
from posttrainbench.sandbox.relay.fake import FakeUpstream

DUMMY_TOKEN = re.compile(rb"ptb-[0-9a-f]{32}")
# Shaped like real keys, so that both exact and pattern redaction are exercised.
FAKE_KEYS = {
    "anthropic": "sk-ant-api03-" + "Q" * 40 + "-test",
    "openai": "sk-proj-" + "R" * 48,
    "gemini": "AIza" + "S" * 35,
}


@dataclass
class EpisodeRun:
    proc: subprocess.CompletedProcess[str]
    run_dir: Path | None
    record: RunRecord | None
    episode: Episode
    upstream: FakeUpstream
    secrets: list[str] = field(default_factory=list)


def ensure_installed(agent: str, cache_dir: Path) -> None:
    """The pinned CLI, installed from npm once per test session (PTB_CACHE is the session's)."""
    cli = get_agent(agent).cli
    assert cli is not None
    install(agent, cli, load_settings())


def run_episode(
    ptb,  # the `ptb` fixture (tests/conftest.py)
    tmp_path: Path,
    *,
    agent: str,
    wire: EpisodeWire,
    env: dict[str, str],
    base_var: str,
    extra_args: tuple[str, ...] = (),
    steps: list[Step] | None = None,
    budget: str = "5m",
    sandbox: str = "bwrap",
    timeout: float = 600,
) -> EpisodeRun:
    """`ptb run --agent AGENT` on ptb-tiny × arith against a fake provider serving the episode;
    `base_var` is the harness variable that points the relay at the fake (e.g.
    ANTHROPIC_BASE_URL), set to the fake's URL."""
    episode = Episode(steps or standard_steps())
    results = tmp_path / "results"
    with FakeUpstream() as up:
        up.handler = episode.handler(wire)
        proc = ptb(
            "run", "--agent", agent, "--base-model", "ptb-tiny", "--benchmark", "arith",
            "--budget", budget, "--sandbox", sandbox, "--results", str(results), *extra_args,
            env=env | {base_var: up.url}, timeout=timeout,
        )  # fmt: skip
    runs = sorted(results.glob("*/*/run.json"))
    run_dir = runs[-1].parent if runs else None
    record = RunRecord.model_validate_json(runs[-1].read_text()) if runs else None
    return EpisodeRun(proc, run_dir, record, episode, up, list(env.values()))


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def check_episode(result: EpisodeRun, *, min_tool_calls: int = 4) -> Trajectory:
    """What every CLI's episode must show: a harness-evaluated score, a valid trajectory with
    the episode's tool calls and observations, token counts equal to what the fake sent, and
    no secret anywhere in the run directory."""
    proc, record, run_dir = result.proc, result.record, result.run_dir
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert record is not None and run_dir is not None
    assert record.complete
    assert result.episode.finished, "the CLI never asked for the episode's last step"
    assert record.agent_cli is not None
    assert record.collect is not None and record.collect.status == "collected"
    assert record.outcome is not None and record.outcome.source == "evaluated"
    assert record.metrics is not None
    traj = Trajectory.model_validate_json((run_dir / "agent" / "trajectory.json").read_text())
    assert traj.extra is not None and traj.extra["source"] == "relay"  # not the CLI's stdout
    check = CheckResult.model_validate_json((run_dir / "integrity" / "trajectory.json").read_text())
    assert check.status == "passed" and check.figures["forged"] == 0, check  # stdout agrees
    calls = [c for s in traj.steps for c in s.tool_calls or []]
    assert len(calls) >= min_tool_calls, [c.function_name for c in calls]
    observed = [r for s in traj.steps if s.observation for r in s.observation.results]
    assert any("saved final_model" in (r.content or "") for r in observed)
    assert (run_dir / "agent" / "transcript.md").read_text().strip()
    usage = record.agent.api_usage if record.agent else None
    assert usage is not None
    sent = result.episode.sent
    assert (usage.input_tokens, usage.output_tokens, usage.cached_tokens) == (
        sent.input_tokens,
        sent.output_tokens,
        sent.cached_tokens,
    )
    assert usage.calls == result.episode.answers
    home = run_dir / "agent" / "home"  # the CLI's own config may hold the (dead) dummy token
    for path in _files(run_dir):
        if path.stat().st_size > 50 << 20:
            continue
        data = path.read_bytes()
        for secret in result.secrets:
            assert secret.encode() not in data, f"{secret[:12]}… found in {path}"
        if not path.is_relative_to(home):
            assert not DUMMY_TOKEN.search(data), f"a relay token is in {path}"
    return traj


def provider_env(provider: str) -> dict[str, str]:
    var = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY", "gemini": "GEMINI_API_KEY"}
    return {var[provider]: FAKE_KEYS[provider]}


def assert_cli_report_agrees(record: RunRecord) -> None:
    """The CLI's own report of its LLM calls equals the relay's meter: tokens, calls, dollars."""
    assert record.agent is not None
    cli, relay = record.agent.cli_usage, record.agent.api_usage
    assert cli is not None and relay is not None
    assert (cli.input_tokens, cli.output_tokens, cli.cached_tokens, cli.calls) == (
        relay.input_tokens,
        relay.output_tokens,
        relay.cached_tokens,
        relay.calls,
    )
    assert cli.cost_usd == relay.cost_usd
    assert record.agent.usage_check is not None and record.agent.usage_check.startswith("agree")
