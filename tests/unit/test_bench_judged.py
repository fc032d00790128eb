"""The LLM judge and the two judged benchmarks against a local OpenAI-compatible judge: verdict
parsing and battle arithmetic, rubric arithmetic, retries, counted failures, the on-disk cache,
and each benchmark end to end on the tiny model with the real questions and conversations."""

import json
import re
from pathlib import Path

import pytest

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.errors import ConfigError
from posttrainbench.evaluate.benchmarks.arenahardwriting import (
    battles,
    clean_answer,
    limit_repetitions,
    verdict,
)
from posttrainbench.evaluate.benchmarks.healthbench import criteria_met, example_score, selected
from posttrainbench.evaluate.judge import Judge, Tally
from posttrainbench.evaluate.run import evaluate_model
from tests.fixtures.judge import FakeJudge
from tests.fixtures.judged_data import HEALTH, _package_file, write_arena, write_healthbench


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("My final verdict is: [[A>>B]]", "A>>B"),
        ("first [[A>B]] then [[B>A]]", "B>A"),  # the last one counts
        ("[[b<<a]]", "A>>B"),
        ("verdict [A=B]", "A=B"),
        ("no verdict at all", None),
        ("[[C>D]]", None),
    ],
)
def test_verdicts(text: str, label: str | None) -> None:
    assert verdict(text) == label


def test_battles_explode_strong_verdicts_and_count_failures() -> None:
    # game 1: baseline is A; game 2: candidate is A
    assert battles("B>>A", "A>>B") == [1, 1, 1, 1, 1, 1]
    assert battles("A>B", "A=B") == [0, 0.5]
    assert battles(None, "A>B") == [0, 1]  # an unparsable game is a lost battle, not dropped


def test_answers_are_cleaned_like_the_reference() -> None:
    assert clean_answer("<think>plan</think>\n\nStory.") == "Story."
    text = limit_repetitions("line\n" * 12 + "end")
    assert text.count("line") == 5 and text.endswith("end")
    assert limit_repetitions("ha" * 3 + "abc" * 20).count("abc") == 5


def test_rubric_arithmetic() -> None:
    rubrics = [{"points": 5}, {"points": 3}, {"points": -4}]
    assert example_score(rubrics, [True, True, False]) == 1.0
    assert example_score(rubrics, [True, False, True]) == pytest.approx(1 / 8)
    assert example_score(rubrics, [False, False, True]) == pytest.approx(-0.5)  # the mean clips
    assert criteria_met('```json\n{"explanation": "x", "criteria_met": true}\n```') is True
    assert criteria_met("yes") is None


def test_subset_selection_on_the_real_rows() -> None:
    rows = [json.loads(x) for x in _package_file(HEALTH).read_text().split("\n") if x]
    assert len(rows) == 500 and sum(selected(r) for r in rows) == 39


async def _ask(judge: Judge, prompt: str, tally: Tally):  # type: ignore[no-untyped-def]
    return await judge.ask(prompt, verdict, tally)


def test_judge_retries_counts_and_caches(tmp_path: Path) -> None:
    import asyncio

    replies = iter(["I cannot decide.", "Still thinking.", "[[A>B]]"])
    with FakeJudge(lambda _: next(replies)) as server:  # two unparsable replies, then a verdict
        judge = Judge("openai/gpt-5-mini", base_url=f"{server.url}/v1", cache_dir=tmp_path)
        tally = Tally(model=judge.model)
        got = asyncio.run(_ask(judge, "prompt one", tally))
        assert got.value == "A>B" and got.attempts == 3 and tally.calls == 3
        assert tally.input_tokens == 300 and tally.cost_usd and tally.cost_usd > 0
        again = asyncio.run(_ask(judge, "prompt one", tally))
        assert again.cached and again.value == "A>B" and server.calls() == 3  # no new call
    with FakeJudge(lambda _: "no verdict") as server:
        judge = Judge("openai/gpt-5-mini", base_url=f"{server.url}/v1", cache_dir=tmp_path)
        tally = Tally(model=judge.model)
        failed = asyncio.run(_ask(judge, "prompt two", tally))
        assert failed.value is None and tally.failed == 1 and server.calls() == 3
        assert "unparsable" in (failed.error or "")


def test_a_judged_benchmark_needs_a_judge(tmp_path: Path, cache_dir: Path) -> None:
    from posttrainbench.evaluate.benchmarks.base import TaskOptions, make_task

    write_arena(cache_dir)
    with pytest.raises(ConfigError, match="--judge-model"):
        make_task(BENCHMARKS.get("arenahardwriting").implementation(), TaskOptions(limit=1))


_BASELINE = re.compile(r"BASELINE ANSWER to \w+")


def _favour_candidate(prompt: str) -> str:
    """Assistant A is the baseline in game 1 and the candidate in game 2: always pick the one
    that is not the baseline."""
    a_start = prompt.index("Start of Assistant A")
    b_start = prompt.index("Start of Assistant B", a_start)
    baseline_is_a = bool(_BASELINE.search(prompt[a_start:b_start]))
    return "Clear. [[B>>A]]" if baseline_is_a else "Clear. [[A>>B]]"


def test_arena_end_to_end(tiny_model_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    write_arena(cache_dir)
    with FakeJudge(_favour_candidate) as server:
        m = evaluate_model(
            tiny_model_dir, "arenahardwriting", tmp_path / "eval", limit=2,
            template_family="ptb-tiny", max_tokens=8, judge_model="openai/gpt-5-mini",
            judge_base_url=f"{server.url}/v1",
        )  # fmt: skip
    assert m.metric == "score" and m.score == 1.0 and m.n_samples == 2
    assert m.judge and m.judge.calls == 4 and m.judge.failed == 0 and m.judge.cost_usd


def test_healthbench_end_to_end(tiny_model_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    write_healthbench(cache_dir)
    impl = BENCHMARKS.get("healthbench").implementation()
    samples = impl.samples("test")
    assert len(samples) == 39
    assert "ideal_completion" not in impl.export(tmp_path / "export").read_text()
    with FakeJudge(lambda _: '{"explanation": "ok", "criteria_met": false}') as server:
        m = evaluate_model(
            tiny_model_dir, "healthbench", tmp_path / "eval", limit=2,
            template_family="ptb-tiny", max_tokens=8, judge_model="openai/gpt-5-mini",
            judge_base_url=f"{server.url}/v1",
        )  # fmt: skip
    assert m.score == 0.0 and m.n_samples == 2 and m.judge and m.judge.failed == 0
    assert m.judge.calls == server.calls() > 0
