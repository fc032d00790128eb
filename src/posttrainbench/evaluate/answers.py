"""Final answers out of completions, compared exactly.

Math answers are compared as numbers after normalisation — commas (`1,000`), `$`, `%`, a
leading `+`, trailing zeros (`18.00`), `\\boxed{}` and markdown emphasis — with exact rational
equality, never by suffix or substring: the reference's `endswith` counted "ANSWER: 711" right
for 11. A fraction `a/b` is its value (`1/2` equals `0.5`). Multiple-choice answers are one
letter from the allowed set.
"""

from __future__ import annotations

import re
from fractions import Fraction

_ANSWER_LINE = re.compile(r"ANSWER\s*[:：]\s*(.+)", re.IGNORECASE)
_HASHES = re.compile(r"####\s*(.+)")
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_NUMBER = re.compile(r"[-+]?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?")
_NUMBER_ONLY = re.compile(r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?$")


def to_number(text: str) -> Fraction | None:
    """The exact value of a number written as people write answers, else None."""
    t = text.strip()
    t = re.sub(r"\\boxed\s*\{(.*)\}", r"\1", t)
    t = re.sub(r"\\(?:text|mathrm)\s*\{[^}]*\}", "", t)
    t = re.sub(r"\\d?frac\s*\{([^}]*)\}\s*\{([^}]*)\}", r"\1/\2", t)
    t = t.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    t = t.strip(" *_`.\"'()[]\t\n").replace(" ", "")
    if not _NUMBER_ONLY.match(t):
        return None
    t = t.replace(",", "").lstrip("+")
    try:
        return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None


def final_answer(completion: str) -> str | None:
    """The completion's final answer: the last `ANSWER: x`, else `#### x`, else the last
    `\\boxed{x}`, else the last number in the text."""
    for pattern in (_ANSWER_LINE, _HASHES, _BOXED):
        found = pattern.findall(completion)
        if found:
            return str(found[-1]).strip()
    numbers = _NUMBER.findall(completion)
    return numbers[-1].strip() if numbers else None


def numbers_equal(answer: str | None, target: str) -> bool:
    if answer is None:
        return False
    got = to_number(answer)
    if got is None:  # "ANSWER: 42 apples": the first number of the answer line
        first = _NUMBER.search(answer)
        got = to_number(first.group(0)) if first else None
    want = to_number(target)
    return got is not None and want is not None and got == want


def choice_letter(completion: str, letters: str = "ABCD") -> str | None:
    """The chosen letter: the last `ANSWER: X`, else the last `(X)` or standalone X."""
    found = _ANSWER_LINE.findall(completion)
    if found:
        m = re.search(rf"\b([{letters}])\b", found[-1].upper())
        if m:
            return m.group(1)
    alone = re.findall(rf"(?:\(([{letters}])\)|\b([{letters}])\b)", completion)
    if alone:
        a, b = alone[-1]
        return a or b
    return None
