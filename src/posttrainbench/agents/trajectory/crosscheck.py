"""The CLI's stdout trajectory set against the relay's: what stdout claims that the relay never
carried (assistant text, tool calls, tool outputs), and the relay's tool calls stdout lacks.

stdout is a pipe every process in the sandbox inherits, so a claim the relay never carried is a
forgery unless it is stdout's last word (the CLI may print a tool's output and be stopped before
its next call): a claim followed by carried ones is `forged`, a trailing one is not.

CLIs log what they sent in their own way, so texts are compared line by line after collapsing
whitespace. A tool output is carried when its first and last lines are (each may sit inside a
carried line: Gemini CLI sends `Output: <first line>`) and at least half of it is (Codex hands
a long-running command's output to the model in several polls, and shortens long outputs in the
middle), or when it is a short text inside what the relay carried (a CLI's own framing). A tool
call's arguments are compared without quotes and backslashes (a CLI may log a command
shell-quoted) and may wrap a carried command in a shell (`/bin/bash -lc '...'`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from posttrainbench.agents.trajectory.schema import Trajectory

_SPACE = re.compile(r"\s+")
_QUOTES = re.compile(r"[\\'\"]")
SHORT = 400  # a text this long or shorter may sit anywhere inside a carried one
MAX_SEARCHES = 64
MIN_LINE = 8  # shorter lines and argument strings (flags, "bash", "ok") say nothing
SHELLS = frozenset(
    {"bash", "sh", "zsh", "/bin/bash", "/bin/sh", "/bin/zsh", "/usr/bin/bash", "-c", "-lc", "-l"}
)


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _bare(text: str) -> str:
    return _norm(_QUOTES.sub(" ", text))


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)


@dataclass(frozen=True)
class Claim:
    """One thing stdout says happened."""

    step: int
    kind: str  # "assistant text", "tool call", "tool output"
    text: str
    carried: bool


@dataclass
class Comparison:
    claims: list[Claim]
    relay_calls: int  # tool calls the relay carried that name a command or text
    missing_calls: int  # of those, the ones stdout does not show

    @property
    def uncarried(self) -> list[Claim]:
        return [c for c in self.claims if not c.carried]

    @property
    def forged(self) -> list[Claim]:
        """Uncarried claims followed by a carried one: not the cut tail of a stopped CLI."""
        last = max((i for i, c in enumerate(self.claims) if c.carried), default=-1)
        return [c for i, c in enumerate(self.claims) if not c.carried and i < last]


class _Texts:
    """What one side carried: its texts joined, and an index of their lines."""

    def __init__(self, texts: list[str], norm: Any = _norm) -> None:
        self.norm = norm
        self.joined = "\n".join(norm(t) for t in texts if t)
        self.lines = {norm(line) for t in texts for line in t.splitlines()}
        self.texts = {norm(t) for t in texts}

    def carries(self, text: str) -> bool:
        t = self.norm(text)
        if not t or t in self.texts or t in self.lines:
            return True
        if len(t) <= SHORT and t in self.joined:
            return True
        lines = [n for n in (self.norm(line) for line in text.splitlines()) if len(n) >= MIN_LINE]
        if not lines:
            return False
        searches = MAX_SEARCHES  # a line inside a carried one costs a search of all the text

        def known(line: str) -> bool:
            nonlocal searches
            if line in self.lines:
                return True
            searches -= 1
            return searches >= 0 and line in self.joined

        if not (known(lines[0]) and known(lines[-1])):
            return False
        return 2 * sum(len(n) for n in lines if known(n)) >= sum(map(len, lines))

    def carries_command(self, text: str) -> bool:
        """An argument value: carried, or a carried one run through a shell."""
        t = self.norm(text)
        if len(t) < MIN_LINE or t in self.texts or t in self.joined:
            return True
        return any(
            len(leaf) >= MIN_LINE
            and leaf in t
            and all(word in SHELLS for word in t.replace(leaf, " ", 1).split())
            for leaf in self.texts
        )


def _significant(arguments: dict[str, Any]) -> list[str]:
    return [v for v in _leaves(arguments) if len(_bare(v)) >= MIN_LINE]


def compare(stdout: Trajectory, relay: Trajectory) -> Comparison:
    said, seen, args = [], [], []
    relay_commands: list[list[str]] = []
    for step in relay.steps:
        if step.source == "agent":
            said += [step.message, step.reasoning_content or ""]
        else:
            seen.append(step.message)
        for call in step.tool_calls or []:
            leaves = _significant(call.arguments)
            args += leaves
            if leaves:
                relay_commands.append(leaves)
        for result in step.observation.results if step.observation else []:
            seen.append(result.content or "")
    spoken, observed, argued = _Texts(said), _Texts(seen + said), _Texts(args, _bare)
    claims: list[Claim] = []
    shown: list[str] = []
    for step in stdout.steps:
        if step.source != "agent":
            continue
        if _norm(step.message):
            claims.append(
                Claim(step.step_id, "assistant text", step.message, spoken.carries(step.message))
            )
        for call in step.tool_calls or []:
            leaves = _significant(call.arguments)
            shown += leaves
            odd = [v for v in leaves if not argued.carries_command(v)]
            claims.append(Claim(step.step_id, "tool call", odd[0] if odd else "", not odd))
        for result in step.observation.results if step.observation else []:
            content = result.content or ""
            if _norm(content):
                claims.append(
                    Claim(step.step_id, "tool output", content, observed.carries(content))
                )
    logged = _Texts(shown, _bare)
    missing = sum(
        1 for leaves in relay_commands if not any(logged.carries_command(v) for v in leaves)
    )
    return Comparison(claims, len(relay_commands), missing)
