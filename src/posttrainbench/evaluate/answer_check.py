"""HumanEval answers checked in isolation (the v1.2 protocol): the model's code never runs in
the process that runs the tests, and exit status alone never counts.

A checker process (evaluate/answer_checker.py, sandboxed) runs the benchmark's prompt and tests
and calls `check` with a proxy. Each call of the proxy reaches this harness, which runs the
model's code and that one call in a fresh sandbox (evaluate/answer_call.py: no network, no host
files beyond the read-only system, own PID namespace, rlimits) and sends back the result only
if it is a plain value (evaluate/plain_values.py), re-encoded here, or the exception it raised.
An answer passes only if the checker says, with the nonce given for this sample, that check()
returned; a call that exits early, times out or returns anything else (an object whose __eq__ is
always true) makes the sample wrong. A sandbox that fails to start, or a checker that stops
before running the tests, is the harness's failure: retried once, then `EvaluationError`
(kind "infrastructure"), never a wrong answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from posttrainbench.errors import EvaluationError
from posttrainbench.evaluate import code_sandbox
from posttrainbench.evaluate.plain_values import plain_value

CALL_TIMEOUT_S = 30  # one call, as long as the single-process rule gave the whole program
SAMPLE_TIMEOUT_S = 300  # all calls and tests of one sample
MESSAGE_LIMIT = 1 << 20
STARTED = '{"started": true}'

_here = files("posttrainbench.evaluate")
_PLAIN = _here.joinpath("plain_values.py").read_text()
CHECKER_SOURCE = _PLAIN + "\n" + _here.joinpath("answer_checker.py").read_text()
CALL_SOURCE = _PLAIN + "\n" + _here.joinpath("answer_call.py").read_text()
_FENCE = re.compile(r"```python\n(.*?)```", re.DOTALL)  # inspect_evals' humaneval, as pinned


class AnswerVerdict(BaseModel):
    """What the isolated checker concluded about one answer (goes into Score metadata)."""

    passed: bool
    reason: str
    detail: str | None = None
    calls: int = 0
    attempts: int = 1
    retried_because: str | None = None
    isolation: str = "bwrap"


class _Infrastructure(Exception):
    """The sandbox or the checker failed for reasons that are not the answer's."""


def code_isolation(samples: list[Any]) -> dict[str, str]:
    """For metrics.json params: how the samples' code ran ("bwrap", or the opt-in
    "rlimits-only"), from their scores' metadata; {} where no code ran."""
    seen = {
        str(score.metadata["isolation"])
        for sample in samples
        for score in (sample.scores or {}).values()
        if score.metadata and "isolation" in score.metadata
    }
    return {"code_isolation": ", ".join(sorted(seen))} if seen else {}


def find_code(completion: str) -> str:
    """The code of a completion: its first ```python block, else the text itself (the
    reference's rule: a block fenced otherwise is not extracted)."""
    blocks = _FENCE.findall(completion)
    return blocks[0] if blocks else completion


def candidate_code(prompt: str, completion: str, entry_point: str) -> str:
    """The model's program: the prompt (imports, helpers, the stub) and the model's code; a
    completion that defines the entry point replaces the stub, anything else is its body."""
    code = find_code(completion)
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return f"{prompt}\n    pass\n\n{code}"
    return prompt + code


async def check_answer(
    prompt: str,
    completion: str,
    test: str,
    entry_point: str,
    *,
    call_timeout_s: float = CALL_TIMEOUT_S,
    sample_timeout_s: float = SAMPLE_TIMEOUT_S,
) -> AnswerVerdict:
    """Score one completion; an infrastructure failure twice raises `EvaluationError`."""
    mode = code_sandbox.isolation()
    code = candidate_code(prompt, completion, entry_point)
    first: str | None = None
    for attempt in (1, 2):
        try:
            async with _gate():  # the time limits start once the sample has a CPU
                verdict = await _check_once(
                    code, prompt, test, entry_point, mode, call_timeout_s, sample_timeout_s
                )
        except _Infrastructure as exc:
            if first is None:
                first = str(exc)
                continue
            raise EvaluationError(
                "infrastructure failure: the HumanEval checker failed twice, not because of "
                f"the answer: {first}; {exc}",
                "check that bubblewrap works here (ptb doctor)",
                kind="infrastructure",
            ) from None
        return verdict.model_copy(
            update={"attempts": attempt, "retried_because": first, "isolation": mode}
        )
    raise AssertionError("unreachable")


async def _check_once(
    code: str,
    prompt: str,
    test: str,
    entry_point: str,
    mode: str,
    call_timeout_s: float,
    sample_timeout_s: float,
) -> AnswerVerdict:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + sample_timeout_s
    nonce = secrets.token_hex(16)
    with _workdir("ptb-checker-") as directory:
        proc = await code_sandbox.spawn(
            ["python", "-S", "-I", "-c", CHECKER_SOURCE], directory,
            cpu_s=sample_timeout_s, mode=mode,
        )  # fmt: skip
        if proc.stdin is None or proc.stdout is None or proc.stderr is None:
            await code_sandbox.kill(proc)
            raise _Infrastructure("the checker started without its stdin, stdout and stderr")
        stdin, stdout = proc.stdin, proc.stdout
        errors = asyncio.create_task(_tail(proc.stderr))
        request = {"prompt": prompt, "test": test, "entry_point": entry_point, "nonce": nonce}
        ready = done = False
        calls, failed = 0, None
        try:
            await _send(stdin, request)
            while True:
                line = await asyncio.wait_for(stdout.readline(), deadline - loop.time())
                if not line:
                    break
                message = _message(line)
                if message.get("ready") == nonce:
                    ready = True
                elif message.get("done") == nonce:
                    done = True
                elif ready and isinstance(message.get("call"), str):
                    calls += 1
                    left = min(call_timeout_s, deadline - loop.time())
                    reply = await _call(code, entry_point, message["call"], left, mode)
                    if "invalid" in reply:
                        failed = str(reply["invalid"])
                        break
                    await _send(stdin, reply)
                else:
                    raise _Infrastructure(f"the checker said {line[:200]!r}")
        except TimeoutError:
            failed = f"timed out after {sample_timeout_s:.0f} s"
        except (BrokenPipeError, ConnectionResetError):
            pass  # the checker ended; its exit and output tell why
        finally:
            if proc.returncode is None and (failed or not done):
                await code_sandbox.kill(proc)
            returncode = await proc.wait()
            detail = (await errors)[-2000:] or None
    if failed is not None:
        return AnswerVerdict(passed=False, reason=failed, detail=detail, calls=calls)
    if not ready:
        raise _Infrastructure(f"the checker stopped before the tests (exit {returncode}): {detail}")
    if done and returncode == 0:
        return AnswerVerdict(passed=True, reason="passed", calls=calls)
    if done:
        raise _Infrastructure(f"the checker finished but exited {returncode}: {detail}")
    return AnswerVerdict(passed=False, reason="tests failed", detail=detail, calls=calls)


async def _call(
    code: str, entry_point: str, args: str, timeout: float, mode: str
) -> dict[str, Any]:
    """One call in a fresh sandbox: {"ok": repr}, {"raised": [name, message]} or {"invalid"}."""
    try:
        if not isinstance(plain_value(args), tuple):
            raise ValueError("not a tuple")
    except ValueError as exc:
        raise _Infrastructure(f"the tests call the function with {args[:100]}: {exc}") from None
    request = json.dumps({"code": code, "entry_point": entry_point, "args": args}) + "\n"
    with _workdir("ptb-call-") as directory:
        try:
            r = await code_sandbox.run(
                ["python", "-S", "-I", "-c", CALL_SOURCE], directory,
                input=request, timeout=max(timeout, 1.0), mode=mode,
            )  # fmt: skip
        except TimeoutError:
            return {"invalid": f"a call timed out after {timeout:.0f} s"}
    lines = r.stdout.splitlines()
    if not lines or lines[0] != STARTED:
        raise _Infrastructure(f"a call's sandbox did not start (exit {r.returncode}): "
                              f"{r.stderr[-500:]}")  # fmt: skip
    if r.returncode != 0 or len(lines) != 2:
        return {"invalid": f"a call ended without one answer (exit {r.returncode}, "
                           f"{len(lines) - 1} answers)"}  # fmt: skip
    reply = _message(lines[1].encode())
    if set(reply) == {"ok"} and isinstance(reply["ok"], str):
        try:
            return {"ok": repr(plain_value(reply["ok"]))}
        except ValueError:
            return {"invalid": f"a call returned {reply['ok'][:80]}, not a plain value"}
    raised = reply.get("raised")
    if set(reply) == {"raised"} and isinstance(raised, list) and len(raised) == 2:
        name, message = (str(part)[:500] for part in raised)
        return {"raised": [name, message]}
    return {"invalid": "a call answered outside the protocol"}


def _message(line: bytes) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def _send(stdin: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    stdin.write(json.dumps(message).encode() + b"\n")
    await stdin.drain()


async def _tail(stream: asyncio.StreamReader) -> str:
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-MESSAGE_LIMIT:]
    return kept.decode(errors="replace")


_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _gate() -> asyncio.Semaphore:
    """At most one sample checked per CPU at a time (its calls run one after another), per
    event loop."""
    loop = asyncio.get_running_loop()
    if loop not in _gates:
        _gates[loop] = asyncio.Semaphore(max(2, os.cpu_count() or 2))
    return _gates[loop]


@contextlib.contextmanager
def _workdir(prefix: str) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if os.geteuid() == 0:
            os.chown(directory, code_sandbox.CODE_UID, code_sandbox.CODE_UID)
        directory.chmod(0o700)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
