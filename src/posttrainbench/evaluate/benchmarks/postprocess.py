"""What the reference does to a judged benchmark's answer before the judge sees it.

Arena-Hard Writing and HealthBench both strip the answer, drop a leading `<think>…</think>`
block and collapse runaway repetitions to at most five copies. The repetition rule has three
passes, repeated (at most ten rounds) until none changes the text: runs of identical lines;
the first run of a repeated block of 2–29 lines (a trailing partial copy of the block is dropped
with it); and repeated substrings of 3–500 characters, in five length bands, each band re-applied
until it finds nothing.
"""

from __future__ import annotations

import itertools
import re

MAX_REPEATS = 5
ROUNDS = 10
_BANDS = ((3, 30), (30, 60), (60, 120), (120, 250), (250, 500))
_MAX_BLOCK = 30


def _line_runs(lines: list[str], n: int) -> tuple[list[str], bool]:
    out: list[str] = []
    changed = False
    for _, group in itertools.groupby(lines):
        run = list(group)
        changed |= len(run) > n
        out.extend(run[:n])
    return out, changed


def _partial_copy(rest: list[str], block: list[str]) -> bool:
    """Whether the lines after a collapsed run are the start of one more (possibly cut) copy."""
    if len(rest) > len(block):
        return False
    for got, want in zip(rest, block, strict=False):
        g, w = got.strip(), want.strip()
        if got != want and not (g and want.startswith(g)) and not (w and got.startswith(w)):
            return False
    return True


def _block_run(lines: list[str], n: int) -> tuple[list[str], bool]:
    """Collapse the first block (smallest size first) repeated more than n times in a row."""
    for size in range(2, min(_MAX_BLOCK, len(lines) // MAX_REPEATS + 1)):
        for start in range(len(lines) - size + 1):
            block = lines[start : start + size]
            end, count = start + size, 1
            while end + size <= len(lines) and lines[end : end + size] == block:
                end, count = end + size, count + 1
            if count > n:
                rest = lines[end:]
                tail = [] if rest and _partial_copy(rest, block) else rest
                return lines[:start] + block * n + tail, True
    return lines, False


def _substring_runs(text: str, n: int) -> tuple[str, bool]:
    changed = False
    while True:
        found = 0
        for lo, hi in _BANDS:
            pattern = re.compile(rf"(.{{{lo},{hi}}}?)\1{{{n},}}", re.DOTALL)
            text, subs = pattern.subn(lambda m: m.group(1) * n, text)
            found += subs
        if not found:
            return text, changed
        changed = True


def limit_repetitions(text: str, max_reps: int = MAX_REPEATS) -> str:
    """The text with no pattern repeated more than `max_reps` times in a row."""
    for _ in range(ROUNDS):
        lines, by_line = _line_runs(text.split("\n"), max_reps)
        lines, by_block = _block_run(lines, max_reps)
        text, by_substring = _substring_runs("\n".join(lines), max_reps)
        if not (by_line or by_block or by_substring):
            break
    return text


def clean_answer(text: str) -> str:
    """The answer the judge sees: stripped, without a leading think block, repetitions capped."""
    text = text.strip()
    if text.startswith("<think>") and "</think>" in text:
        text = text.split("</think>", 1)[1].strip()
    return limit_repetitions(text)
