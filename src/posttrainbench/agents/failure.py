"""Why an agent's CLI stopped early, told from its exit and the relay's log of its LLM calls.

A CLI that stops because its provider failed it (a refused key, an outage, rate or usage limits)
did not fail the task: that is an infrastructure failure, never scored, and (except a refused
key, which needs fixing) retryable. A spent `--api-budget-usd` and a crash with healthy calls
are the agent's own. The last forwarded call decides: an agent that recovered from a 529 and
went on is not a failed one. A crash is the kind of crash of the agent's sort (`CRASHES`): an LLM
CLI's (`cli_crash`, which counts the calls it made) or a command's (`command_crash`, which says
nothing of LLM calls: a command may make none); either carries the tail of the agent's stderr.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from posttrainbench.records import AgentFailure, AgentFailureKind
from posttrainbench.sandbox.relay.calls import LlmCall

INFRASTRUCTURE: frozenset[AgentFailureKind] = frozenset(
    {"cli_missing", "cli_version", "missing_key", "invalid_key", "provider_outage",
     "rate_limited", "usage_limit"}
)  # fmt: skip
NOT_RETRYABLE: frozenset[AgentFailureKind] = frozenset(
    {"invalid_key", "api_budget", "cli_crash", "command_crash"}
)
STDERR_TAIL_LINES = 10
_USAGE_LIMIT = re.compile(
    r"quota|usage limit|credit|billing|spend(ing)? limit|insufficient_quota|exceeded your",
    re.IGNORECASE,
)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def failure(kind: AgentFailureKind, message: str, tail: Sequence[str] = ()) -> AgentFailure:
    return AgentFailure(
        kind=kind, retryable=kind not in NOT_RETRYABLE, message=message, stderr_tail=list(tail)
    )


def _cli_crash(exit_code: int, calls: Sequence[LlmCall], tail: Sequence[str]) -> AgentFailure:
    seen = f"{len(calls)} LLM call(s), the last one answered" if calls else "no LLM call"
    return failure("cli_crash", f"the CLI exited with {exit_code} after {seen}", tail)


def _command_crash(exit_code: int, calls: Sequence[LlmCall], tail: Sequence[str]) -> AgentFailure:
    last = f": {tail[-1][:200]}" if tail else " and wrote nothing to stderr"
    return failure("command_crash", f"the command exited with {exit_code}{last}", tail)


# Which crash an agent's non-zero exit is: an LLM CLI's, or a command's (see Agent.crash).
CRASHES = {"cli_crash": _cli_crash, "command_crash": _command_crash}
CrashKind = Literal["cli_crash", "command_crash"]


def stderr_tail(path: Path, lines: int = STDERR_TAIL_LINES, width: int = 300) -> list[str]:
    """The last non-blank lines of a log, control characters dropped, each clipped to width."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    kept = [_CONTROL.sub("", line).rstrip() for line in text.splitlines()]
    return [line[:width] for line in kept if line.strip()][-lines:]


def is_infrastructure(f: AgentFailure | None) -> bool:
    return f is not None and f.kind in INFRASTRUCTURE


def _kind(call: LlmCall) -> AgentFailureKind | None:
    if call.refused == "budget":
        return "api_budget"
    if call.refused is not None or 200 <= call.status < 300:
        return None
    error = call.error or ""
    if call.status in (401, 403):
        return "invalid_key"
    if call.status == 402 or (call.status == 429 and _USAGE_LIMIT.search(error)):
        return "usage_limit"
    if call.status == 429:
        return "rate_limited"
    if call.status >= 500:  # 502 from the relay itself: upstream unreachable
        return "provider_outage"
    return None


def classify(
    exit_code: int | None,
    calls: Sequence[LlmCall],
    crash: CrashKind = "cli_crash",
    stderr: Sequence[str] = (),
) -> AgentFailure | None:
    """The failure of a launch that ended on its own (not at the deadline), or None."""
    decisive = [c for c in calls if c.refused in (None, "budget")]
    last = decisive[-1] if decisive else None
    kind = _kind(last) if last is not None else None
    if kind is not None and last is not None:
        tail = 0
        for call in reversed(decisive):
            if _kind(call) != kind:
                break
            tail += 1
        ok = sum(200 <= c.status < 300 and c.refused is None for c in decisive)
        return failure(
            kind,
            f"the last {tail} LLM call(s) failed ({last.status}"
            f"{': ' + last.error[:160] if last.error else ''}); {ok} succeeded before",
            stderr,
        )
    if exit_code is not None and exit_code != 0:
        return CRASHES[crash](exit_code, decisive, stderr)
    return None
