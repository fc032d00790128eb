"""Final answers out of completions, read as the reference harness reads them.

Math (GSM8K, AIME) follows the reference's final evaluation (aisa-group/PostTrainBench
`src/eval/exact_numeric_match.py`, which keeps the extraction of inspect_ai's
`match(numeric=True)`): drop `$ £ € , * _` and every `.` not followed by a digit, split on
whitespace, and take the last word that is a number (digits and dots, an optional leading `-`).
That is the output's last number, wherever it stands: an `ANSWER:` line earns nothing more. It
is compared with the target by value, exactly, never by suffix (the reference's `endswith`
counted "ANSWER: 711" right for 11). AIME first unwraps `\\boxed{…}`, as inspect_evals' AIME
scorer does. Differences from the reference are listed in DEVIATIONS.md.

Multiple choice (GPQA) follows inspect_ai's `multiple_choice` rule as the reference ran it
(`parse_answers` in `solver/_multiple_choice.py` of inspect_ai 0.1.dev3780): the first line that
starts with `ANSWER:`, else the first `ANSWER:` anywhere; what follows must be exactly one of
the choice letters, in capitals. Anything else is no answer, and no answer is wrong.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUMERIC_PUNCTUATION = re.compile(r"[$£€,*_]|\.(?=\s|$|\D)")
_BOXED = re.compile(r"\\boxed\{(.+)\}")
_DIGITS = re.compile(r"[\d.]+")
_DECIMAL = re.compile(r"\.\d+$|\d+(?:\.\d+)?")
_TARGET = re.compile(r"-?\d+(?:\.\d+)?")
_ANSWER_LINE = re.compile(r"^ANSWER\s*:\s*([A-Za-z\d ,]+)\s*(?:$|\n|\.)", re.I | re.M)
_ANSWER_ANYWHERE = re.compile(r"ANSWER\s*:\s*([A-Za-z\d ,]+)(?:[^\w]|\n|$|\.)", re.I)


def strip_boxed(text: str) -> str:
    """`\\boxed{x}` as `x`, line by line (inspect_evals' `remove_boxed_from_ans`)."""
    return _BOXED.sub(r"\1", text)


def _is_number(word: str) -> bool:
    return word.removeprefix("-").replace(".", "").isnumeric()


def last_number(text: str) -> str | None:
    """The last whitespace-separated word of `text` that is a number, punctuation removed."""
    words = _NUMERIC_PUNCTUATION.sub("", text.strip()).split()
    return next((w for w in reversed(words) if _is_number(w)), None)


def number_value(word: str) -> Fraction | None:
    """The exact value of a number word: a leading `-`, then `.5` or the decimal that starts
    the word (`1.2.3` is 1.2, as inspect's parser reads it). None for what does not parse
    (`.1.2`) and for numerals other than digits (`5²`, `½`; see DEVIATIONS.md)."""
    digits = word.removeprefix("-")
    found = _DECIMAL.match(digits) if _DIGITS.fullmatch(digits) else None
    if found is None:
        return None
    value = Fraction(found.group(0))
    return -value if word.startswith("-") else value


def numbers_equal(answer: str | None, target: str) -> bool:
    """Whether the extracted answer equals the target as a number, exactly."""
    plain = _NUMERIC_PUNCTUATION.sub("", target.strip())
    if not _TARGET.fullmatch(plain):
        raise ValueError(f"target {target!r} is not a number")
    return answer is not None and number_value(answer) == Fraction(plain)


def choice_letter(completion: str, letters: str = "ABCD") -> str | None:
    """The chosen letter by inspect's rule: the first `ANSWER: X`, X exactly one of letters."""
    found = _ANSWER_LINE.search(completion) or _ANSWER_ANYWHERE.search(completion)
    if found is None:
        return None
    chosen = found.group(1).strip()
    return chosen if len(chosen) == 1 and chosen in letters else None
