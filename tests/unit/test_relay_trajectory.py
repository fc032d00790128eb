"""The trajectory from the relay's own record: a real relay on its unix socket, between a scripted
client that plays a CLI's agent loop and the fake provider playing the episode, in each wire
format; the bodies it keeps (redacted, capped), the trajectory built from them (each message
once, every tool output attached to its call), and the cross-check of a stdout against it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from posttrainbench.agents.trajectory.crosscheck import compare
from posttrainbench.agents.trajectory.relay import from_file
from posttrainbench.agents.trajectory.relay_wire import Entry, reader_for
from posttrainbench.agents.trajectory.schema import (
    Observation,
    ObservationResult,
    Step,
    ToolCall,
    Trajectory,
)
from posttrainbench.sandbox.relay import Relay
from posttrainbench.sandbox.relay.bodies import read_bodies
from posttrainbench.sandbox.relay.episode import Episode, EpisodeWire, Say, Shell
from posttrainbench.sandbox.relay.episode.anthropic import AnthropicEpisode
from posttrainbench.sandbox.relay.episode.chat import ChatEpisode
from posttrainbench.sandbox.relay.episode.gemini import GeminiEpisode
from posttrainbench.sandbox.relay.episode.responses import ResponsesEpisode
from posttrainbench.sandbox.relay.fake import FakeUpstream

DUMMY = "ptb-relay-dummy-token-0123456789"
KEYS = {
    "anthropic": ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "sk-ant-api03-" + "Z" * 40),
    "openai": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "sk-proj-" + "Y" * 48),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "AIza" + "X" * 35),
}
STEPS = [Shell("ls -la data", "look"), Shell("python train.py", "train"), Say("Done training.")]
PROMPT = "Post-train the base model on arith."


def output(entry: Entry) -> str:
    return f"output of {entry.call_id or entry.name}: {entry.args()}"


# Each format: the path, the first request, and how a client appends an answer and tool outputs.
Format = tuple[str, dict[str, Any], Callable[[dict[str, Any], list[Entry]], None]]


def anthropic() -> Format:
    body: dict[str, Any] = {
        "model": "claude-sonnet-4-5", "max_tokens": 1000, "stream": True, "system": "SYSTEM",
        "tools": [{"name": "Bash", "input_schema": {}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
    }  # fmt: skip

    def step(body: dict[str, Any], said: list[Entry]) -> None:
        content: list[dict[str, Any]] = [
            {"type": "thinking", "thinking": e.text, "signature": "s"} if e.kind == "reasoning"
            else {"type": "text", "text": e.text} if e.kind == "text"
            else {"type": "tool_use", "id": e.call_id, "name": e.name, "input": e.args()}
            for e in said
        ]  # fmt: skip
        results = [
            {"type": "tool_result", "tool_use_id": e.call_id, "content": output(e)}
            for e in said
            if e.kind == "call"
        ]
        body["messages"] += [{"role": "assistant", "content": content}]
        body["messages"] += [{"role": "user", "content": results}] if results else []

    return "/v1/messages?beta=true", body, step


def chat() -> Format:
    tool = {"name": "bash", "parameters": {"properties": {"command": {"type": "string"}}}}
    body: dict[str, Any] = {
        "model": "gpt-4.1", "stream": True, "tools": [{"type": "function", "function": tool}],
        "messages": [{"role": "system", "content": "SYSTEM"}, {"role": "user", "content": PROMPT}],
    }  # fmt: skip

    def step(body: dict[str, Any], said: list[Entry]) -> None:
        calls = [e for e in said if e.kind == "call"]
        body["messages"].append(
            {"role": "assistant", "content": "".join(e.text for e in said if e.kind == "text"),
             "tool_calls": [{"id": e.call_id, "type": "function", "function": {
                 "name": e.name, "arguments": json.dumps(e.args())}} for e in calls]}
        )  # fmt: skip
        body["messages"] += [
            {"role": "tool", "tool_call_id": e.call_id, "content": output(e)} for e in calls
        ]

    return "/v1/chat/completions", body, step


def responses() -> Format:
    tool = {"type": "function", "name": "shell_command",
            "parameters": {"properties": {"command": {"type": "string"}}}}  # fmt: skip
    body: dict[str, Any] = {
        "model": "gpt-5", "stream": True, "instructions": "SYSTEM", "tools": [tool],
        "input": [{"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": PROMPT}]}],
    }  # fmt: skip

    def step(body: dict[str, Any], said: list[Entry]) -> None:
        for e in said:
            if e.kind == "reasoning":
                body["input"].append(
                    {"type": "reasoning", "summary": [{"type": "summary_text", "text": e.text}]}
                )
            elif e.kind == "text":
                text = [{"type": "output_text", "text": e.text}]
                body["input"].append({"type": "message", "role": "assistant", "content": text})
            else:
                body["input"] += [
                    {"type": "function_call", "call_id": e.call_id, "name": e.name,
                     "arguments": json.dumps(e.args())},
                    {"type": "function_call_output", "call_id": e.call_id, "output": output(e)},
                ]  # fmt: skip

    return "/v1/responses", body, step


def gemini() -> Format:
    body: dict[str, Any] = {
        "systemInstruction": {"parts": [{"text": "SYSTEM"}]},
        "tools": [{"functionDeclarations": [{"name": "run_shell_command"}]}],
        "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
    }

    def step(body: dict[str, Any], said: list[Entry]) -> None:
        parts = [
            {"text": e.text, "thought": True} if e.kind == "reasoning"
            else {"text": e.text} if e.kind == "text"
            else {"functionCall": {"name": e.name, "args": e.args()}}
            for e in said
        ]  # fmt: skip
        results = [
            {"functionResponse": {"name": e.name, "response": {"output": output(e)}}}
            for e in said
            if e.kind == "call"
        ]
        body["contents"] += [{"role": "model", "parts": parts}]
        body["contents"] += [{"role": "user", "parts": results}] if results else []

    path = "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    return path, body, step


CASES: dict[str, tuple[str, Callable[[], Format], EpisodeWire]] = {
    "anthropic": ("anthropic", anthropic, AnthropicEpisode()),
    "chat": ("openai", chat, ChatEpisode()),
    "responses": ("openai", responses, ResponsesEpisode()),
    "gemini": ("gemini", gemini, GeminiEpisode()),
}


@pytest.fixture
def sock_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="ptb-t-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def play(case: str, tmp_path: Path, sock_dir: Path, *, side_call: bool = True) -> Path:
    """One episode through a real relay; returns the bodies file."""
    provider, make, wire = CASES[case]
    var, base_var, key = KEYS[provider]
    path, body, step = make()
    episode = Episode(list(STEPS))
    log = tmp_path / "run" / "agent" / "llm_calls.jsonl"
    with FakeUpstream() as up:
        up.handler = episode.handler(wire)
        relay = Relay(
            provider, sock_dir / "r.sock", log, DUMMY, environ={var: key, base_var: up.url}
        )
        with relay:
            client = httpx.Client(
                transport=httpx.HTTPTransport(uds=str(relay.socket_path)),
                base_url="http://relay",
                headers={"authorization": f"Bearer {DUMMY}", "x-api-key": DUMMY,
                         "x-goog-api-key": DUMMY},
            )  # fmt: skip
            reader = reader_for(provider, path.split("?")[0] + "?")
            assert reader is not None
            if side_call:  # a CLI's title request: no tools, the same prompt
                side = {k: v for k, v in body.items() if k != "tools"}
                client.post(path, json=side).raise_for_status()
            for _ in range(len(STEPS)):
                answer = client.post(path, json=body)
                answer.raise_for_status()
                said = reader.response(answer.text, True)
                step(body, said)
                if not any(e.kind == "call" for e in said):
                    break
            assert relay.wait_idle()
    assert episode.finished
    return relay.bodies_path


@pytest.mark.parametrize("case", list(CASES))
def test_the_trajectory_is_built_from_the_relay_record(
    case: str, tmp_path: Path, sock_dir: Path
) -> None:
    bodies = play(case, tmp_path, sock_dir)
    raw = bodies.read_text()
    provider = CASES[case][0]
    assert KEYS[provider][2] not in raw and DUMMY not in raw  # never the key nor the token
    records = read_bodies(bodies)
    assert len(records) == 4 and all(r.request and r.response for r in records)
    traj = from_file(bodies, "agent-x", "1.0")
    assert traj is not None and traj.extra is not None
    assert traj.extra["source"] == "relay" and traj.extra["unread"] == []
    users = [s.message for s in traj.steps if s.source == "user"]
    assert users == [PROMPT]  # repeated in every request and the side call: one step
    assert [s.message for s in traj.steps if s.source == "system"] == ["SYSTEM"]
    agent = [s for s in traj.steps if s.source == "agent"]
    assert len(agent) == 4  # the side answer and the three loop answers, none repeated
    calls = [c for s in agent for c in s.tool_calls or []]
    commands = [" ".join(str(v) for v in c.arguments.values()) for c in calls]
    assert [any(step.command in c for c in commands) for step in STEPS[:2]] == [True, True]
    results = [r.content for s in agent if s.observation for r in s.observation.results]
    assert len(results) == 2 and all(r and r.startswith("output of ") for r in results)
    assert agent[-1].message == "Done training."
    assert all(s.metrics and s.metrics.prompt_tokens for s in agent)  # the relay's own meter


def test_a_body_over_its_cap_is_left_out_and_said(tmp_path: Path, sock_dir: Path) -> None:
    from posttrainbench.sandbox.relay.bodies import BodyCapture, BodyLog

    log = BodyLog(tmp_path / "b.jsonl", ("secret-value",), max_body=100, max_total=1500)
    capture = BodyCapture(100)
    capture.feed(b"x" * 150)
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    common: dict[str, Any] = {"started_at": now, "provider": "openai", "method": "POST",
                              "path": "/v1/responses", "status": 200, "stream": False}  # fmt: skip
    log.add(**common, request=b'{"k": "secret-value"}', response=capture)
    log.add(**common, request=b"y" * 101, response=None)
    for _ in range(10):
        log.add(**common, request=b"z" * 90, response=None)
    records = read_bodies(tmp_path / "b.jsonl")
    assert records[0].request == '{"k": "[REDACTED]"}' and records[0].response is None
    assert records[0].omitted == ["response: over the 100-byte cap"]
    assert records[1].request is None and "over the 100-byte cap" in records[1].omitted[0]
    assert records[-1].request is None and "file's 1500-byte cap" in records[-1].omitted[-1]
    assert [r.seq for r in records] == list(range(12))
    assert BodyLog(tmp_path / "b.jsonl", ())._seq == 12  # a later launch goes on counting


def _stdout_like(relay: Trajectory) -> Trajectory:
    """What an honest CLI's stdout says: the relay's agent steps, tool outputs included."""
    steps = [s.model_copy(deep=True) for s in relay.steps if s.source == "agent"]
    return Trajectory(session_id="cli", agent=relay.agent, steps=steps)


def test_an_honest_stdout_agrees_and_a_forged_one_does_not(tmp_path: Path, sock_dir: Path) -> None:
    traj = from_file(play("anthropic", tmp_path, sock_dir, side_call=False))
    assert traj is not None
    honest = compare(_stdout_like(traj), traj)
    assert honest.uncarried == [] and (honest.missing_calls, honest.relay_calls) == (0, 2)
    forged = _stdout_like(traj)
    fake = Step(
        step_id=99, source="agent", message="I only trained on data/train.jsonl.",
        tool_calls=[ToolCall(tool_call_id="f1", function_name="Bash",
                             arguments={"command": "python train.py --data data/train.jsonl"})],
        observation=Observation(results=[ObservationResult(source_call_id="f1",
                                                           content="trained on 64 train rows")]),
    )  # fmt: skip
    forged.steps.insert(1, fake)
    result = compare(forged, traj)
    assert {c.kind for c in result.forged} == {"assistant text", "tool call", "tool output"}
    assert all(c.step == 99 for c in result.forged)
    forged.steps = [*_stdout_like(traj).steps, fake]  # at the very end: a cut tail, not forged
    tail = compare(forged, traj)
    assert tail.forged == [] and len(tail.uncarried) == 3
    short = _stdout_like(traj)
    short.steps = short.steps[:1]
    assert compare(short, traj).missing_calls == 1


# --- write_trajectory and the `trajectory` check, over a run directory the relay wrote into


def _claude_stdout(relay: Trajectory, forged_at: int | None = None) -> str:
    """Claude Code's stream-json for the relay's agent steps (what an honest CLI prints), with
    a forged assistant line and tool result inserted after agent step `forged_at`."""
    lines: list[dict[str, Any]] = [{"type": "system", "subtype": "init", "session_id": "s"}]
    agent = [s for s in relay.steps if s.source == "agent"]
    for n, step in enumerate(agent):
        content: list[dict[str, Any]] = [{"type": "text", "text": step.message}]
        content += [
            {"type": "tool_use", "id": c.tool_call_id, "name": c.function_name,
             "input": c.arguments}
            for c in step.tool_calls or []
        ]  # fmt: skip
        lines.append({"type": "assistant", "message": {"id": f"m{n}", "content": content}})
        results = [
            {"type": "tool_result", "tool_use_id": r.source_call_id, "content": r.content}
            for r in (step.observation.results if step.observation else [])
        ]
        if results:
            lines.append({"type": "user", "message": {"content": results}})
        if n == forged_at:
            lines += [
                {"type": "assistant", "message": {"id": "forged", "content": [
                    {"type": "text", "text": "FORGED: only the train split."},
                    {"type": "tool_use", "id": "tf", "name": "Bash",
                     "input": {"command": "python train.py --data data/train.jsonl"}}]}},
                {"type": "user", "message": {"content": [
                    {"type": "tool_result", "tool_use_id": "tf", "content": "FORGED output"}]}},
            ]  # fmt: skip
    return "".join(json.dumps(line) + "\n" for line in lines)


def _check_run(tmp_path: Path, sock_dir: Path, stdout: Callable[[Trajectory], str]) -> Any:
    from posttrainbench.agents import get_agent
    from posttrainbench.agents.harness import write_trajectory
    from posttrainbench.catalog import BENCHMARKS, MODELS
    from posttrainbench.config import load_settings
    from posttrainbench.integrity.base import CheckContext
    from posttrainbench.integrity.trajectory_check import TrajectoryCheck
    from posttrainbench.records import RunRecord, RunSpec
    from posttrainbench.results.layout import RunPaths
    from posttrainbench.runner import harness_info

    bodies = play("anthropic", tmp_path, sock_dir, side_call=False)
    paths = RunPaths(tmp_path / "run")
    relay = from_file(bodies)
    assert relay is not None
    paths.agent_stdout.write_text(stdout(relay))
    spec = RunSpec(
        run_id="r", agent="claude-code", base_model="ptb-tiny", benchmark="arith", budget_s=60
    )
    record = RunRecord(spec=spec, harness=harness_info())
    write_trajectory(get_agent("claude-code"), paths, record, [DUMMY])
    ctx = CheckContext(
        paths=paths, record=record, model=MODELS.get("ptb-tiny"),
        bench=BENCHMARKS.get("arith"), settings=load_settings(),
    )  # fmt: skip
    return paths, relay, TrajectoryCheck().run(ctx)


def test_an_honest_stdout_passes_the_check(tmp_path: Path, sock_dir: Path) -> None:
    paths, relay, check = _check_run(tmp_path, sock_dir, _claude_stdout)
    traj = Trajectory.model_validate_json(paths.trajectory.read_text())
    assert traj.extra is not None and (traj.extra["source"], traj.extra["stdout"]) == (
        "relay",
        "ok",
    )
    assert [s.model_dump() for s in traj.steps] == [s.model_dump() for s in relay.steps]
    assert paths.stdout_trajectory.is_file() and paths.transcript.read_text().strip()
    assert check.status == "passed", check
    assert check.figures["forged"] == 0 and check.figures["stdout_claims"] >= 5


def test_a_forged_stdout_fails_the_check_and_changes_nothing(
    tmp_path: Path, sock_dir: Path
) -> None:
    paths, relay, check = _check_run(tmp_path, sock_dir, lambda r: _claude_stdout(r, 0))
    traj = Trajectory.model_validate_json(paths.trajectory.read_text())
    assert [s.model_dump() for s in traj.steps] == [s.model_dump() for s in relay.steps]
    assert "FORGED" not in paths.trajectory.read_text()
    assert check.status == "failed"
    decisive = [e for e in check.evidence if e.decisive]
    assert {e.excerpt for e in decisive} == {
        "FORGED: only the train split.",
        "python train.py --data data/train.jsonl",
        "FORGED output",
    }
    assert all(e.kind == "step" and e.step is not None for e in decisive)


def test_an_unreadable_stdout_is_recorded_not_silent(tmp_path: Path, sock_dir: Path) -> None:
    _, _, check = _check_run(tmp_path, sock_dir, lambda r: "")
    assert check.status == "passed"  # the relay's record stands; the lost cross-check is said
    assert any("gave no trajectory (empty)" in e.summary for e in check.evidence), check


def test_llm_calls_without_the_relay_record_fail_closed(tmp_path: Path, sock_dir: Path) -> None:
    paths, _, _ = _check_run(tmp_path, sock_dir, _claude_stdout)
    paths.relay_bodies.unlink()
    paths.trajectory.unlink()
    from posttrainbench.agents import get_agent
    from posttrainbench.agents.harness import write_trajectory
    from posttrainbench.catalog import BENCHMARKS, MODELS
    from posttrainbench.config import load_settings
    from posttrainbench.integrity.base import CheckContext
    from posttrainbench.integrity.trajectory_check import TrajectoryCheck
    from posttrainbench.records import LogStats, RunRecord, RunSpec
    from posttrainbench.records.agent import AgentAttempt, AgentOutcome
    from posttrainbench.runner import harness_info

    spec = RunSpec(
        run_id="r", agent="claude-code", base_model="ptb-tiny", benchmark="arith", budget_s=60
    )
    record = RunRecord(spec=spec, harness=harness_info())
    write_trajectory(get_agent("claude-code"), paths, record, [DUMMY])
    stdout = Trajectory.model_validate_json(paths.trajectory.read_text())
    assert stdout.extra is not None and stdout.extra["source"] == "stdout"
    ctx = CheckContext(
        paths=paths, record=record, model=MODELS.get("ptb-tiny"),
        bench=BENCHMARKS.get("arith"), settings=load_settings(),
    )  # fmt: skip
    check = TrajectoryCheck().run(ctx)
    assert check.status == "error" and "3 LLM calls went through the relay" in check.reasons[0]
    # A capped stdout alone is context, not decisive.
    paths.llm_calls.unlink()
    paths.trajectory.unlink()
    attempt = AgentAttempt.model_construct(stdout=LogStats(kept_bytes=9, dropped_bytes=7))
    record.agent = AgentOutcome.model_construct(attempts=[attempt])
    check = TrajectoryCheck().run(ctx)
    assert check.status == "passed" and check.figures["stdout_dropped_bytes"] == 7
    assert [e.decisive for e in check.evidence] == [False]


def test_an_unanswered_call_is_a_system_step() -> None:
    from datetime import UTC, datetime

    from posttrainbench.agents.trajectory.relay import build
    from posttrainbench.sandbox.relay.bodies import CallBodies

    request = json.dumps({"model": "claude-sonnet-4-5", "messages": [
        {"role": "user", "content": PROMPT}]})  # fmt: skip
    overloaded = '{"type":"error","error":{"type":"overloaded_error"}}'
    calls = [
        CallBodies(seq=n, started_at=datetime.now(UTC), provider="anthropic", method="POST",
                   path="/v1/messages", status=529, request=request, response=overloaded)
        for n in range(2)
    ]  # fmt: skip
    traj = build(calls)
    assert traj is not None
    assert [(s.source, s.message[:40]) for s in traj.steps] == [
        ("user", PROMPT),
        ("system", "the LLM call got no answer: status 529: "),
        ("system", "the LLM call got no answer: status 529: "),
    ]
    assert "overloaded_error" in traj.steps[1].message


def test_repeated_outputs_count_and_cleared_ones_do_not() -> None:
    """The same command twice with the same output is two steps with one output each; a CLI that
    later clears an old output in its history does not add an observation."""
    from datetime import UTC, datetime

    from posttrainbench.agents.trajectory.relay import build
    from posttrainbench.sandbox.relay.bodies import CallBodies

    def call(n: str) -> dict[str, Any]:
        return {"id": n, "type": "function",
                "function": {"name": "bash", "arguments": '{"command": "echo hi"}'}}  # fmt: skip

    def answer(message: dict[str, Any]) -> str:
        return json.dumps({"choices": [{"index": 0, "message": message}]})

    user = {"role": "user", "content": PROMPT}
    said1 = {"role": "assistant", "content": "", "tool_calls": [call("c1")]}
    said2 = {"role": "assistant", "content": "", "tool_calls": [call("c2")]}
    history = [
        ([user], said1),
        ([user, said1, {"role": "tool", "tool_call_id": "c1", "content": "hi"}], said2),
        ([user, said1, {"role": "tool", "tool_call_id": "c1", "content": "[cleared]"}, said2,
          {"role": "tool", "tool_call_id": "c2", "content": "hi"}],
         {"role": "assistant", "content": "done"}),
    ]  # fmt: skip
    calls = [
        CallBodies(seq=n, started_at=datetime.now(UTC), provider="openai", method="POST",
                   path="/v1/chat/completions", status=200,
                   request=json.dumps({"model": "gpt-5", "messages": messages}),
                   response=answer(said))
        for n, (messages, said) in enumerate(history)
    ]  # fmt: skip
    traj = build(calls)
    assert traj is not None
    agent = [s for s in traj.steps if s.source == "agent"]
    assert [[c.tool_call_id for c in s.tool_calls or []] for s in agent] == [["c1"], ["c2"], []]
    assert [[r.content for r in s.observation.results] if s.observation else [] for s in agent] == [
        ["hi"],
        ["hi"],
        [],
    ]
    assert [s.source for s in traj.steps].count("user") == 1


def test_cli_framings_of_what_was_sent_are_carried() -> None:
    """What real CLIs log differs from what they send: Codex logs a command shell-quoted and a
    long command's output whole where the model got it in polls; Gemini CLI sends
    `Output: <first line>`. None of it is a forgery; an output the relay never carried is."""
    lines = [f"step {n} loss {n / 7:.3f} and some more words" for n in range(30)]

    def step(n: int, command: str, outputs: list[str], text: str = "") -> Step:
        return Step(
            step_id=n, source="agent", message=text,
            tool_calls=[ToolCall(tool_call_id=f"c{n}", function_name="shell",
                                 arguments={"cmd": command})],
            observation=Observation(results=[ObservationResult(source_call_id=f"c{n}", content=o)
                                             for o in outputs]),
        )  # fmt: skip

    script = "cat > t.py <<'PY'\nprint(\"hi\")\nPY\npython t.py"
    relay = Trajectory(session_id="r", agent={"name": "x", "version": "1"}, steps=[  # type: ignore[arg-type]
        step(1, script, ["Chunk ID: 1\nOutput:\n" + "\n".join(lines[:12]),
                         "Chunk ID: 2\nOutput:\n" + "\n".join(lines[12:])], "I will train."),
        step(2, "ls -la data", ["<untrusted_context>\nOutput: total 28\nfile-a.jsonl\n"
                                "file-b.jsonl\nProcess Group PGID: 3\n</untrusted_context>"]),
    ])  # fmt: skip
    quoted = '/bin/bash -lc "cat > t.py <<\'PY\'\nprint(\\"hi\\")\nPY\npython t.py"'
    stdout = Trajectory(session_id="s", agent={"name": "x", "version": "1"}, steps=[  # type: ignore[arg-type]
        step(1, quoted, ["\n".join(lines)], "I will train."),
        step(2, "ls -la data", ["total 28\nfile-a.jsonl\nfile-b.jsonl"]),
    ])  # fmt: skip
    honest = compare(stdout, relay)
    assert honest.uncarried == [] and honest.missing_calls == 0
    results = stdout.steps[1].observation.results  # type: ignore[union-attr]
    results[0].content = "total 28\nfile-x.jsonl\nfile-b.jsonl"  # ends carried, most of it
    assert compare(stdout, relay).uncarried == []
    results[0].content = "total 28\nfile-z.jsonl\nsecret.jsonl"
    assert [c.kind for c in compare(stdout, relay).uncarried] == ["tool output"]
    stdout.steps.reverse()  # followed by carried claims: forged
    assert [c.kind for c in compare(stdout, relay).forged] == ["tool output"]
