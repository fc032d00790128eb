"""What the harness does around each launch of an agent, for every agent alike.

Before: write the agent's config files into its HOME without following links the agent may have
planted there, and write what the launch reads on stdin (the task, or a re-prompt that tells a
stopped agent the time left). After: classify why the CLI stopped from the relay's call log,
redact secrets from the logs, build `trajectory.json` and `transcript.md` from the relay's
record of the LLM calls (the CLI's native stream, converted, kept beside it as a cross-check;
the stream itself for agents without the relay), and set the CLI's own usage report against the
relay's meter.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

from pydantic import ValidationError

from posttrainbench.agents.base import Agent
from posttrainbench.agents.failure import classify, stderr_tail
from posttrainbench.agents.trajectory.redact import Redactor, secrets_of
from posttrainbench.agents.trajectory.schema import Trajectory
from posttrainbench.agents.trajectory.transcript import render
from posttrainbench.errors import InfrastructureError
from posttrainbench.records import AgentFailure, AgentOutcome, CliUsage, RunRecord, format_duration
from posttrainbench.results.layout import RunPaths
from posttrainbench.sandbox.relay.calls import LlmCall

log = logging.getLogger(__name__)


def place_files(home: Path, files: dict[str, str]) -> None:
    """Write `files` (HOME-relative) under `home`, refusing links and escapes on the way."""
    for rel, text in files.items():
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts:
            raise InfrastructureError(f"agent config file {rel!r} is not inside HOME")
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for name in parts[:-1]:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o755, dir_fd=fd)
                nxt = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nxt
            with contextlib.suppress(FileNotFoundError):
                st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    os.unlink(parts[-1], dir_fd=fd)
            out = os.open(
                parts[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=fd
            )
            with os.fdopen(out, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise InfrastructureError(
                f"cannot write the agent's config file {rel} into its HOME: {exc}",
                "the agent may have replaced part of the path with a link; start a new run",
            ) from exc
        finally:
            os.close(fd)


def stdin_of(text: str) -> BinaryIO:
    """An anonymous in-memory file holding `text`, for the agent's stdin: its /proc fd link names
    no path of the host (a file of the run directory would)."""
    fd = os.memfd_create("ptb-input", os.MFD_CLOEXEC)
    f = os.fdopen(fd, "w+b")
    f.write(text.encode("utf-8"))
    f.seek(0)
    return f


def reprompt(left_s: float, budget_s: int, task_file: str, task: str | None) -> str:
    """What a stopped agent is told; `task` repeats the whole task for a CLI that cannot resume
    its conversation."""
    text = (
        f"You stopped, but {format_duration(int(left_s))} of your {format_duration(budget_s)} "
        "remain (run `bash timer.sh` to check). The task is unchanged and is in "
        f"{task_file}. Use the time left to improve final_model/, and keep a working "
        "final_model/ in place at all times: whatever is there at the deadline is evaluated."
    )
    return text + (f"\n\nThe task, again:\n\n{task}" if task else "")


def calls_since(path: Path, since: datetime) -> list[LlmCall]:
    calls: list[LlmCall] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return calls
    for line in lines:
        try:
            call = LlmCall.model_validate_json(line)
        except ValidationError:
            continue
        if call.started_at >= since:
            calls.append(call)
    return calls


def failure_of(
    agent: Agent, paths: RunPaths, started_at: datetime, exit_code: int | None
) -> AgentFailure | None:
    calls = calls_since(paths.llm_calls, started_at)
    return classify(exit_code, calls, agent.crash, stderr_tail(paths.agent_stderr))


def redact_logs(paths: RunPaths, secrets: Iterable[str]) -> None:
    redactor = Redactor(secrets)
    for path in (paths.agent_stdout, paths.agent_stderr):
        redactor.file(path)


def _usage_check(outcome: AgentOutcome) -> str | None:
    relay, cli = outcome.api_usage, outcome.cli_usage
    if relay is None or cli is None:
        return None
    pairs = {
        "input tokens": (relay.input_tokens, cli.input_tokens),
        "output tokens": (relay.output_tokens, cli.output_tokens),
        "cached tokens": (relay.cached_tokens, cli.cached_tokens),
    }
    off = [f"{name}: relay {r}, CLI {c}" for name, (r, c) in pairs.items() if r != c]
    if cli.cost_usd is not None and abs(relay.cost_usd - cli.cost_usd) > Decimal("0.01"):
        off.append(f"cost: relay ${relay.cost_usd}, CLI ${cli.cost_usd}")
    if not off:
        reported = f"{cli.calls} reported by the CLI" if cli.calls else "the CLI counts none"
        return f"agree ({relay.calls} relay calls, {reported})"
    return "differ: " + "; ".join(off)


def _fill_prompts(traj: Trajectory, paths: RunPaths) -> None:
    """CLIs that do not echo their prompt leave empty user steps, one per launch: fill them from
    what each launch was given on stdin."""
    empty = [s for s in traj.steps if s.source == "user" and not s.message]
    inputs = sorted(
        paths.agent_dir.glob("input-*.txt"), key=lambda p: int(p.stem.removeprefix("input-"))
    )
    if empty and len(empty) == len(inputs):
        for step, given in zip(empty, inputs, strict=True):
            step.message = given.read_text(encoding="utf-8", errors="replace")


def _finish(traj: Trajectory, agent: Agent, record: RunRecord, paths: RunPaths) -> Trajectory:
    _fill_prompts(traj, paths)
    cli = record.agent_cli
    update: dict[str, object] = {"name": agent.name}
    if cli is not None:
        update["version"] = cli.version
    if traj.agent.model_name is None and record.spec.agent_model:
        update["model_name"] = record.spec.agent_model
    traj = traj.model_copy(update={"agent": traj.agent.model_copy(update=update)})
    if traj.final_metrics is None:
        traj.final_metrics = traj.totals()
    return traj


def _write(traj: Trajectory, path: Path, redact: Redactor) -> Trajectory:
    text = redact(traj.model_dump_json(indent=1, exclude_none=True))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return Trajectory.model_validate_json(text)


def _from_stdout(
    agent: Agent, paths: RunPaths, redact: Redactor
) -> tuple[Trajectory | None, CliUsage | None, str]:
    """The CLI's own account, its usage report, and how reading it went (`ok`, `absent`, `empty`,
    `none`: the agent has no converter, or `failed: why`)."""
    try:
        stream = paths.agent_stdout.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None, None, "absent"
    try:
        traj = agent.trajectory(redact(stream))
        usage = agent.cli_usage(stream)
    except Exception as exc:  # a converter bug must not cost the run; the check reports it
        log.warning("agent %s: trajectory conversion failed: %s", agent.name, exc)
        return None, None, f"failed: {type(exc).__name__}: {exc}"[:500]
    if traj is None:
        return None, usage, "none"
    return traj, usage, "ok" if traj.steps else "empty"


def write_trajectory(
    agent: Agent, paths: RunPaths, record: RunRecord, secrets: Iterable[str]
) -> None:
    """trajectory.json and transcript.md, from the relay's record of the LLM calls where there is
    one (the CLI's stdout, any process's to write, is then kept as trajectory_stdout.json for the
    cross-check), else from the redacted stdout; and the usage cross-check."""
    from posttrainbench.agents.trajectory import relay

    outcome = record.agent
    redact = Redactor(secrets)
    stdout, usage, status = _from_stdout(agent, paths, redact)
    version = record.agent_cli.version if record.agent_cli else ""
    try:
        traj = relay.from_file(paths.relay_bodies, agent.name, version)
        relay_error = None
    except Exception as exc:  # recorded in the trajectory: the check fails closed on it
        log.warning("agent %s: the relay's trajectory failed: %s", agent.name, exc)
        traj, relay_error = None, f"{type(exc).__name__}: {exc}"[:500]
    if stdout is not None:
        stdout = _finish(stdout, agent, record, paths)
        stdout.extra = {**(stdout.extra or {}), "source": "stdout"}
    if traj is not None:
        traj = _finish(traj, agent, record, paths)
        traj.extra = {**(traj.extra or {}), "stdout": status}
        if stdout is not None:
            _write(stdout, paths.stdout_trajectory, redact)
    elif stdout is not None:
        traj = stdout
        if relay_error:
            traj.extra = {**(traj.extra or {}), "relay_error": relay_error}
    if traj is None:
        return
    clean = _write(traj, paths.trajectory, redact)
    paths.transcript.write_text(redact(render(clean)), encoding="utf-8")
    if outcome is not None and usage is not None:
        outcome.cli_usage = usage
        outcome.usage_check = _usage_check(outcome)


__all__ = [
    "CliUsage",
    "calls_since",
    "failure_of",
    "place_files",
    "redact_logs",
    "reprompt",
    "secrets_of",
    "write_trajectory",
]
