from __future__ import annotations

import math
import random

import pytest

from posttrainbench.integrity import ngrams
from posttrainbench.integrity.ngrams import (
    DEFAULT_THRESHOLD,
    STOPWORDS,
    NgramIndex,
    content_tokens,
    tokens,
)
from tests.fixtures.wordproblems import PARAPHRASES, TEST_ITEMS, TRAIN_ITEMS

BOILERPLATE = (
    "Let's think step by step. How many are there in total? First we add the numbers, then we "
    "subtract. The answer is 12. #### 12"
)


def _one_line(text: str) -> bytes:
    return text.replace("\n", " ").encode()


@pytest.fixture(scope="module")
def index() -> NgramIndex:
    entries = [(f"test/{i}/question", item["question"]) for i, item in enumerate(TEST_ITEMS)]
    entries += [(f"test/{i}/answer", item["answer"]) for i, item in enumerate(TEST_ITEMS)]
    return NgramIndex.build(entries)


def _best(index: NgramIndex, text: str) -> dict[str, float]:
    return {hit.key: hit.coverage for hit in index.scan(_one_line(text), min_coverage=0.0)}


def test_tokens_split_words_numbers_and_symbols() -> None:
    assert tokens("12+7=19") == ["12", "+", "7", "=", "19"]
    assert tokens("Janet's ducks: 16 eggs/day!") == [
        "janet",
        "s",
        "ducks",
        "16",
        "eggs",
        "/",
        "day",
    ]
    assert tokens("caf\u00e9 3.5") == ["caf\u00e9", "3", "5"]
    assert content_tokens("How many of the eggs") == ["eggs"]
    assert {"the", "a", "of", "is", "how", "many"} <= STOPWORDS


def test_verbatim_question_is_found_with_full_coverage(index: NgramIndex) -> None:
    for i, item in enumerate(TEST_ITEMS):
        hits = index.scan(_one_line(item["question"]))
        assert [h.key for h in hits] == [f"test/{i}/question"]
        assert hits[0].coverage == pytest.approx(1.0)
        assert hits[0].matched == hits[0].total


def test_question_inside_a_longer_record_is_found(index: NgramIndex) -> None:
    record = (
        '{"messages": [{"role": "user", "content": "Solve: '
        + TEST_ITEMS[3]["question"]
        + '"}, {"role": "assistant", "content": "Sure."}]}'
    )
    assert _best(index, record)["test/3/question"] == pytest.approx(1.0)


def test_answer_alone_is_found(index: NgramIndex) -> None:
    for i, item in enumerate(TEST_ITEMS):
        assert _best(index, item["answer"])[f"test/{i}/answer"] == pytest.approx(1.0)


def test_paraphrased_questions_are_found(index: NgramIndex) -> None:
    for i, text in PARAPHRASES.items():
        coverage = _best(index, text).get(f"test/{i}/question", 0.0)
        assert coverage >= DEFAULT_THRESHOLD, (i, coverage)


def test_train_items_of_the_same_style_stay_below_threshold(index: NgramIndex) -> None:
    for item in TRAIN_ITEMS:
        text = item["question"] + " " + item["answer"]
        assert max(_best(index, text).values(), default=0.0) < DEFAULT_THRESHOLD


def test_boilerplate_stays_below_threshold(index: NgramIndex) -> None:
    assert max(_best(index, BOILERPLATE).values(), default=0.0) < 0.05


def test_ngrams_do_not_span_lines(index: NgramIndex) -> None:
    words = TEST_ITEMS[4]["question"].split()
    one_word_per_line = "\n".join(words).encode()
    assert index.scan(one_word_per_line, min_coverage=0.0) == []


def test_hits_report_their_line(index: NgramIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ngrams, "BLOCK_BYTES", 64)  # many blocks: line numbers carry over
    lines = [b"nothing to see here"] * 7 + [b""] * 3
    lines[2] = _one_line(TEST_ITEMS[1]["question"])
    lines[8] = _one_line(TEST_ITEMS[5]["answer"])
    hits = index.scan(b"\n".join(lines))
    assert [(h.line, h.key) for h in hits] == [(2, "test/1/question"), (8, "test/5/answer")]


def test_short_entries_are_reported_not_indexed() -> None:
    index = NgramIndex.build([("short", "What is 2+2?"), ("long", TEST_ITEMS[0]["question"])])
    assert index.too_short == ["short"]
    assert index.keys == ["long"]
    assert NgramIndex.build([]).scan(b"anything at all") == []


def _reference_scan(
    entries: list[tuple[str, str]], data: str, n: int, min_coverage: float
) -> set[tuple[int, str, int, int, float]]:
    """Slow, string-based restatement of NgramIndex.build + scan."""

    def grams(text: str) -> set[tuple[str, ...]]:
        words = content_tokens(text)
        return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}

    per_entry = {key: grams(text) for key, text in entries}
    df: dict[tuple[str, ...], int] = {}
    for gs in per_entry.values():
        for g in gs:
            df[g] = df.get(g, 0) + 1
    limit = max(ngrams.BOILERPLATE_MIN_ENTRIES, ngrams.BOILERPLATE_FRACTION * len(entries))

    def weight(g: tuple[str, ...]) -> float:
        numeric = all(t[0].isdigit() or t in "+-*/=<>^%$" for t in g)
        return math.log1p(len(entries) / df[g]) * (ngrams.NUMERIC_WEIGHT if numeric else 1.0)

    kept = {k: {g for g in gs if df[g] <= limit} for k, gs in per_entry.items()}
    kept = {k: gs for k, gs in kept.items() if len(gs) >= ngrams.DEFAULT_MIN_NGRAMS}
    out = set()
    for line_no, line in enumerate(data.split("\n")):
        present = grams(line)
        for key, gs in kept.items():
            common = gs & present
            coverage = sum(map(weight, common)) / sum(map(weight, gs))
            if common and coverage >= min_coverage - 1e-12:
                out.add((line_no, key, len(common), len(gs), round(coverage, 9)))
    return out


def test_scan_agrees_with_a_pure_python_reference() -> None:
    rng = random.Random(7)
    vocab = ["ab", "cd", "efg", "hij", "klmno", "pqrstuvwxyzabcdefghij", "THE", "Of", "how", "many"]
    vocab += [str(rng.randint(0, 99)) for _ in range(8)] + list("+-*/=<>^%$") + ["x,", "(y)"]
    vocab += ["caf\u00e9", "Na\u00efve", "3rd", "verylongtokenwithmorethan24bytes"]

    def sentence(k: int) -> str:
        return " ".join(rng.choice(vocab) for _ in range(k))

    entries = [(f"e{i}", sentence(rng.randint(3, 14))) for i in range(40)]
    lines = []
    for _ in range(300):
        parts = [sentence(rng.randint(0, 6))]
        if rng.random() < 0.5:
            parts.append(rng.choice(entries)[1])
        parts.append(sentence(rng.randint(0, 6)))
        lines.append(" ".join(parts))
    data = "\n".join(lines)
    index = NgramIndex.build(entries)
    got = {
        (h.line, h.key, h.matched, h.total, round(h.coverage, 9))
        for h in index.scan(data.encode(), min_coverage=0.1)
    }
    expected = _reference_scan(entries, data, ngrams.DEFAULT_N, 0.1)
    assert len(expected) > 50
    assert got == expected
