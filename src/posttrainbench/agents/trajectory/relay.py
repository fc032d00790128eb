"""The trajectory of an LLM agent built from the relay's own record of its calls
(`agent/relay_bodies.jsonl`), not from the CLI's stdout, which any process in the sandbox can
write to.

What the model saw is each request's conversation; since every request repeats the history, only
its new messages become steps: an entry is new when the request holds it more times than the
steps already do (so a repeated, identical tool output still counts). What the model said is each
answer: one agent step per call, with its text, reasoning, tool calls and the relay's metered
usage. Tool outputs sent back are attached to the step that made the call. Side calls of the CLI
(titles, summaries) are steps too: the model saw and said them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from posttrainbench.agents.trajectory.relay_wire import Entry, reader_for, sse_events
from posttrainbench.agents.trajectory.schema import (
    AgentInfo,
    Metrics,
    StepSource,
    ToolCall,
    Trajectory,
    TrajectoryBuilder,
)
from posttrainbench.sandbox.relay.bodies import CallBodies, iter_bodies
from posttrainbench.sandbox.relay.providers import wire_format

SOURCE = "relay"
ERROR_SNIPPET = 300


def _usage(call: CallBodies) -> Metrics | None:
    """The call's usage read by the relay's own meter for its wire format."""
    if call.response is None:
        return None
    meter = wire_format(call.provider).meter()
    text = call.response
    try:
        if call.stream and text.lstrip().startswith(("data:", "event:", ":")):
            for event in sse_events(text):
                meter.event("", event)
        else:
            meter.body(json.loads(text))
    except ValueError:
        return None
    if not meter.seen:
        return None
    u = meter.usage
    return Metrics(
        prompt_tokens=u.input_tokens,
        completion_tokens=u.output_tokens,
        cached_tokens=u.cached_tokens,
    )


class _Build:
    def __init__(self) -> None:
        self.b = TrajectoryBuilder()
        self.seen: Counter[tuple[Any, ...]] = Counter()
        self.unread: list[str] = []
        self.observed: set[str] = set()

    def request(self, call: CallBodies, entries: list[Entry]) -> None:
        counts: Counter[tuple[Any, ...]] = Counter()
        fresh: list[Entry] = []
        for entry in entries:
            key = entry.key()
            counts[key] += 1
            if counts[key] > self.seen[key]:
                self.seen[key] += 1
                fresh.append(entry)
        agent: list[Entry] = []
        for entry in fresh:
            if entry.role == "agent":
                agent.append(entry)
                continue
            self._agent(agent, call, {"from_request": True})
            agent = []
            if entry.kind == "result":
                if entry.call_id is None or entry.call_id not in self.observed:
                    self.b.observe(entry.call_id, entry.text)  # a result cleared later: kept once
                if entry.call_id is not None:
                    self.observed.add(entry.call_id)
            elif entry.kind == "text" and entry.text.strip():
                source: StepSource = "system" if entry.role == "system" else "user"
                stamp = call.started_at.isoformat()
                self.b.add(source, entry.text, timestamp=stamp, extra={"call": call.seq})
        self._agent(agent, call, {"from_request": True})

    def answer(self, call: CallBodies, entries: list[Entry], model: str | None) -> None:
        for entry in entries:
            self.seen[entry.key()] += 1
        self._agent(entries, call, {}, metrics=_usage(call), model=model, always=True)

    def _agent(
        self,
        entries: list[Entry],
        call: CallBodies,
        extra: dict[str, Any],
        *,
        metrics: Metrics | None = None,
        model: str | None = None,
        always: bool = False,
    ) -> None:
        if not entries and not always:
            return
        text = "\n".join(e.text for e in entries if e.kind == "text" and e.text)
        reasoning = "\n".join(e.text for e in entries if e.kind == "reasoning" and e.text)
        calls = [
            ToolCall(tool_call_id=e.call_id or f"call-{call.seq}-{i}", function_name=e.name or "",
                     arguments=e.args())
            for i, e in enumerate(entries) if e.kind == "call"
        ]  # fmt: skip
        self.b.add(
            "agent",
            text,
            timestamp=call.started_at.isoformat(),
            model_name=model,
            reasoning_content=reasoning or None,
            tool_calls=calls or None,
            metrics=metrics,
            extra={"call": call.seq, **extra},
        )


def _model(call: CallBodies, body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if isinstance(model, str):
        return model
    if "/models/" in call.path:  # Gemini names the model in the path
        return call.path.split("/models/", 1)[1].split(":", 1)[0] or None
    return None


def build(calls: Iterable[CallBodies], agent: str = "", version: str = "") -> Trajectory | None:
    """The trajectory of the recorded calls; None when none is an LLM call of a known format."""
    state = _Build()
    read = 0
    models: list[str] = []
    first: datetime | None = None
    for call in calls:
        reader = reader_for(call.provider, call.path.split("?", 1)[0] + "?")
        if reader is None:
            continue
        first = first or call.started_at
        if call.omitted:
            state.unread.append(f"call {call.seq}: " + "; ".join(call.omitted))
        read += 1
        body: dict[str, Any] = {}
        if call.request is not None:
            try:
                parsed = json.loads(call.request)
                body = parsed if isinstance(parsed, dict) else {}
                state.request(call, reader.request(body))
            except (ValueError, TypeError, AttributeError) as exc:
                state.unread.append(f"call {call.seq}: request unreadable: {exc}")
        model = _model(call, body)
        if model:
            models.append(model)
        if not 200 <= call.status < 300:
            answer = f"the LLM call got no answer: status {call.status}"
            detail = (call.response or "")[:ERROR_SNIPPET]
            state.b.add("system", f"{answer}: {detail}" if detail else answer,
                        timestamp=call.started_at.isoformat(),
                        extra={"call": call.seq, "status": call.status})  # fmt: skip
            continue
        if call.response is None:
            continue
        try:
            entries = reader.response(call.response, call.stream)
        except (ValueError, TypeError, AttributeError) as exc:
            state.unread.append(f"call {call.seq}: response unreadable: {exc}")
            continue
        state.answer(call, entries, model)
    if first is None:
        return None
    traj = Trajectory(
        session_id=f"relay-{first:%Y%m%dT%H%M%S}",
        agent=AgentInfo(
            name=agent,
            version=version,
            model_name=Counter(models).most_common(1)[0][0] if models else None,
        ),
        steps=state.b.steps,
        extra={"source": SOURCE, "calls": read, "unread": state.unread},
    )
    traj.final_metrics = traj.totals()
    return traj


def from_file(path: Path, agent: str = "", version: str = "") -> Trajectory | None:
    return build(iter_bodies(path), agent, version)
