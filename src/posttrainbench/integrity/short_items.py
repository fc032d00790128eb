"""Test items too short for n-grams, matched exactly after normalisation, record by record.

An item like the embedded `arith`'s "What is 12 + 7?" / "19" has no 3-gram index worth the name.
Its question and answer are tokenised with the scanner's normalisation (ngrams.py: case,
whitespace and punctuation ignored, numbers as digit runs, so "19.0" holds "19" and "1,000" is
"1 000" on both sides), and a record (line) counts when it holds the question's tokens in a row
and the answer's within ANSWER_WINDOW tokens of it, or — in a data file, where a line is a
training record — the question with no other number or math symbol beside it. A question on its
own in code or prose, or clean training data on other numbers, never counts.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from posttrainbench.integrity.ngrams import (
    BLOCK_BYTES,
    NEWLINE_HASH,
    U64,
    token_hashes,
    window_hashes,
)

_BITS = 20
_SHIFT = np.uint64(64 - _BITS)
ANSWER_WINDOW = 12  # tokens either side of the question ("the answer is 19", "#### 19")


@dataclass(frozen=True)
class ShortHit:
    line: int  # 0-based line within the scanned bytes
    key: str
    alone: bool  # the question alone as a whole record (no answer beside it)


@dataclass(frozen=True)
class _Item:
    key: str
    question: U64
    answer: U64 | None


def _hashes(text: str) -> U64:
    h, _ = token_hashes(" ".join(text.split()).encode())
    return h


class ShortItemIndex:
    """The short items of a benchmark, by question length in tokens."""

    def __init__(self, items: list[_Item]) -> None:
        self.items = items
        self._by_length: dict[int, tuple[U64, npt.NDArray[np.int64]]] = {}
        self._flags: dict[int, npt.NDArray[np.bool_]] = {}  # a bit per top-bits slot of a key
        lengths = sorted({len(i.question) for i in items})
        for n in lengths:
            ids = np.array([k for k, i in enumerate(items) if len(i.question) == n], dtype=np.int64)
            keys = np.array([window_hashes(items[k].question, n)[0] for k in ids], dtype=np.uint64)
            order = np.argsort(keys)
            self._by_length[n] = (keys[order], ids[order])
            flags = np.zeros(1 << _BITS, dtype=bool)
            flags[keys >> _SHIFT] = True
            self._flags[n] = flags

    @classmethod
    def build(
        cls, parts: Iterable[tuple[str, tuple[str, ...]]], short: Collection[str]
    ) -> ShortItemIndex:
        """The items named in `short` (too short for the n-gram index): question, and answer
        (the other parts, joined) when the item has one."""
        items = []
        for key, texts in parts:
            if key not in short or not texts:
                continue
            question = _hashes(texts[0])
            if len(question) == 0:
                continue
            answer = _hashes(" ".join(texts[1:])) if len(texts) > 1 else None
            items.append(
                _Item(key, question, answer if answer is not None and len(answer) else None)
            )
        return cls(items)

    def __len__(self) -> int:
        return len(self.items)

    def scan(self, data: bytes, alone_counts: bool) -> list[ShortHit]:
        """Every (line, item) where `data` (lines split at b"\\n") holds a short item."""
        if not self.items:
            return []
        hits: set[tuple[int, str, bool]] = set()
        first_line = 0
        pos = 0
        while pos < len(data):
            cut = data.find(b"\n", pos + BLOCK_BYTES)
            end = len(data) if cut < 0 else cut + 1
            for line, key, alone in self._scan_block(data[pos:end], alone_counts):
                hits.add((line + first_line, key, alone))
            first_line += data.count(b"\n", pos, end)
            pos = end
        return [ShortHit(line, key, alone) for line, key, alone in sorted(hits)]

    def _scan_block(self, block: bytes, alone_counts: bool) -> list[tuple[int, str, bool]]:
        h, numeric = token_hashes(block)
        found = []
        newlines: npt.NDArray[np.intp] | None = None
        for n, (keys, ids) in self._by_length.items():
            g = window_hashes(h, n)
            if not len(g):
                continue
            maybe = np.flatnonzero(self._flags[n][g >> _SHIFT])
            if not len(maybe):
                continue
            at = np.searchsorted(keys, g[maybe])
            at[at == len(keys)] = 0
            for start in maybe[keys[at] == g[maybe]]:
                if newlines is None:
                    newlines = np.flatnonzero(h == NEWLINE_HASH)
                for k in ids[
                    np.searchsorted(keys, g[start], "left") : np.searchsorted(
                        keys, g[start], "right"
                    )
                ]:
                    item = self.items[int(k)]
                    how = _match(h, numeric, newlines, int(start), item, alone_counts)
                    if how is not None:
                        line = int(np.searchsorted(newlines, start))
                        found.append((line, item.key, how))
        return found


def _match(
    h: U64,
    numeric: npt.NDArray[np.bool_],
    newlines: npt.NDArray[np.intp],
    start: int,
    item: _Item,
    alone_counts: bool,
) -> bool | None:
    """None if no match at `start`; False for question with answer; True for question alone."""
    n = len(item.question)
    if not np.array_equal(h[start : start + n], item.question):
        return None  # a hash collision, or a window across a line
    k = int(np.searchsorted(newlines, start))
    line_start = int(newlines[k - 1]) + 1 if k > 0 else 0
    line_end = int(newlines[k]) if k < len(newlines) else len(h)
    if item.answer is not None:
        a = len(item.answer)
        lo, hi = (
            max(line_start, start - ANSWER_WINDOW - a),
            min(line_end, start + n + ANSWER_WINDOW + a),
        )
        for s in range(lo, hi - a + 1):
            if (s + a <= start or s >= start + n) and np.array_equal(h[s : s + a], item.answer):
                return False
    if alone_counts:
        rest = np.concatenate([numeric[line_start:start], numeric[start + n : line_end]])
        if not rest.any():
            return True
    return None
