"""OpenCode's `opencode run --format json` stream (JSONL) as a trajectory, and the usage it reports.

Each line is `{"type", "timestamp" (ms), "sessionID", "part"}`. One LLM call is `step_start`, then
its parts: `reasoning` (with `--thinking`), `text`, `tool_use` (a finished tool call: `tool`,
`callID`, `state` with `status` completed or error, `input`, `output` or `error`), then
`step_finish` with the finish `reason` and the call's `tokens` (`input` without the cached ones,
`output` without `reasoning`, `cache.read`, `cache.write`) and `cost` (0 when OpenCode has no
price for the model). `error` lines (`error.name`, `error.data.message`) report a failed launch.

The prompt is not in the stream, nor the model's name. A launch's first call follows a call that
ended the agent loop (any reason but `tool-calls` and `unknown`, on which OpenCode goes on), an
error, or a new session: a user step marks it. Every call becomes one agent step.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from posttrainbench.agents.trajectory.jsonl import count, events
from posttrainbench.agents.trajectory.schema import (
    AgentInfo,
    Metrics,
    Step,
    ToolCall,
    Trajectory,
    TrajectoryBuilder,
)
from posttrainbench.records import CliUsage

AGENT = "opencode"
VERSION = "1.18.33"
LOOP_GOES_ON = ("tool-calls", "unknown")  # finish reasons after which OpenCode calls again


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _time(ms: Any) -> str | None:
    if not isinstance(ms, int | float) or isinstance(ms, bool):
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def usage_of(part: dict[str, Any]) -> CliUsage:
    """One `step_finish` part's tokens the way the relay counts them (input with the cache,
    output with the reasoning), and its cost."""
    tokens = part.get("tokens")
    read, write = count(tokens, "cache", "read"), count(tokens, "cache", "write")
    cost = part.get("cost")
    return CliUsage(
        input_tokens=count(tokens, "input") + read + write,
        output_tokens=count(tokens, "output") + count(tokens, "reasoning"),
        cached_tokens=read,
        cache_write_tokens=write,
        calls=1,
        cost_usd=Decimal(str(cost)) if isinstance(cost, int | float) and cost > 0 else None,
    )


class _Converter:
    def __init__(self) -> None:
        self.b = TrajectoryBuilder()
        self.sessions: list[str] = []
        self.launches = 0
        self.loop_open = False  # the last call asked OpenCode to call again
        self.step: Step | None = None  # the agent step of the call in progress
        self.texts: list[str] = []
        self.thoughts: list[str] = []

    def feed(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        part = event.get("part")
        part = part if isinstance(part, dict) else {}
        session = event.get("sessionID")
        if isinstance(session, str) and session and session not in self.sessions:
            self.sessions.append(session)
            self.loop_open = False
        if self.step is None and not self.loop_open:
            self.launches += 1
            launch = {"launch": self.launches, "prompt": "not in opencode's stream"}
            self.b.add("user", "", timestamp=_time(event.get("timestamp")), extra=launch)
        if kind == "error":
            self.close()
            self.error(event)
            return
        if self.step is None or kind == "step_start":
            self.close()
            self.step = self.b.add("agent", timestamp=_time(event.get("timestamp")))
            self.loop_open = True
        if kind == "text" and isinstance(part.get("text"), str):
            self.texts.append(part["text"])
        elif kind == "reasoning" and isinstance(part.get("text"), str):
            self.thoughts.append(part["text"])
        elif kind == "tool_use":
            self.tool(self.step, part)
        elif kind == "step_finish":
            self.finish(self.step, part)
        elif kind != "step_start":
            other: dict[str, Any] = self.step.extra or {}
            self.step.extra = {**other, "events": [*other.get("events", ()), event]}

    def tool(self, step: Step, part: dict[str, Any]) -> None:
        state = part.get("state")
        state = state if isinstance(state, dict) else {}
        call_id = str(part.get("callID") or part.get("id") or f"call-{len(self.b.steps)}")
        args = state.get("input")
        call = ToolCall(
            tool_call_id=call_id,
            function_name=str(part.get("tool") or "unknown"),
            arguments=args if isinstance(args, dict) else {"input": args},
        )
        step.tool_calls = [*(step.tool_calls or []), call]
        status = state.get("status")
        metadata = state.get("metadata")
        exit_code = metadata.get("exit") if isinstance(metadata, dict) else None
        if status != "completed" or exit_code is not None:
            results = (step.extra or {}).get("tool_status", {})
            results[call_id] = {"status": status, "exit_code": exit_code}
            step.extra = {**(step.extra or {}), "tool_status": results}
        if status == "error":
            self.b.observe(call_id, _text(state.get("error") or "error"))
        else:
            self.b.observe(call_id, _text(state.get("output") or ""))

    def finish(self, step: Step, part: dict[str, Any]) -> None:
        used = usage_of(part)
        reason = part.get("reason")
        step.metrics = Metrics(
            prompt_tokens=used.input_tokens,
            completion_tokens=used.output_tokens,
            cached_tokens=used.cached_tokens,
            cost_usd=float(used.cost_usd) if used.cost_usd is not None else None,
            extra={
                "reasoning_tokens": count(part.get("tokens"), "reasoning"),
                "cache_write_tokens": used.cache_write_tokens,
                "finish_reason": reason,
            },
        )
        self.close()
        self.loop_open = reason in LOOP_GOES_ON

    def error(self, event: dict[str, Any]) -> None:
        error = event.get("error")
        error = error if isinstance(error, dict) else {}
        data = error.get("data")
        message = data.get("message") if isinstance(data, dict) else None
        self.b.add("system", _text(message or error.get("name") or "error"),
                   timestamp=_time(event.get("timestamp")),
                   extra={"event": "error", "name": error.get("name")})  # fmt: skip
        self.loop_open = False

    def close(self) -> None:
        """End the call in progress: its text and reasoning go on its step."""
        if self.step is not None:
            self.step.message = "".join(self.texts)
            self.step.reasoning_content = "\n\n".join(self.thoughts) or None
        self.step = None
        self.texts, self.thoughts = [], []


def convert(stream: str, *, version: str = VERSION, model: str | None = None) -> Trajectory:
    """The trajectory of every launch's stream, concatenated; junk lines are skipped and a call
    cut off before its `step_finish` keeps what arrived."""
    found, junk = events(stream)
    conv = _Converter()
    for event in found:
        conv.feed(event)
    conv.close()
    extra: dict[str, Any] = {"sessions": conv.sessions, "launches": conv.launches}
    if junk:
        extra["unparsed_lines"] = junk
    traj = Trajectory(
        session_id=conv.sessions[0] if conv.sessions else "unknown",
        agent=AgentInfo(name=AGENT, version=version, model_name=model),
        steps=conv.b.steps,
        extra=extra,
    )
    traj.final_metrics = traj.totals()
    return traj


def cli_usage(stream: str) -> CliUsage | None:
    """The sum of every call OpenCode reported (`step_finish`); None if it reported none. The
    cost is None where OpenCode priced no call (a model its catalogue does not know)."""
    found, _ = events(stream)
    total = CliUsage()
    costs: list[Decimal] = []
    for event in found:
        part = event.get("part")
        if event["type"] != "step_finish" or not isinstance(part, dict):
            continue
        used = usage_of(part)
        total.calls += 1
        total.input_tokens += used.input_tokens
        total.output_tokens += used.output_tokens
        total.cached_tokens += used.cached_tokens
        total.cache_write_tokens += used.cache_write_tokens
        if used.cost_usd is not None:
            costs.append(used.cost_usd)
    if total.calls == 0:
        return None
    total.cost_usd = sum(costs, Decimal(0)) if costs else None
    return total
