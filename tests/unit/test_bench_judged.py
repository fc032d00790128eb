"""The LLM judge and the two judged benchmarks against a local OpenAI-compatible judge: verdict
parsing and battle arithmetic, rubric arithmetic, retries, counted failures, the on-disk cache,
and each benchmark end to end on the tiny model with the real questions and conversations."""

import json
import re
from pathlib import Path

import pytest

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.errors import ConfigError
from posttrainbench.evaluate.benchmarks import arenahardwriting as arena
from posttrainbench.evaluate.benchmarks import healthbench as hb
from posttrainbench.evaluate.benchmarks.arenahardwriting import battles, verdict
from posttrainbench.evaluate.benchmarks.healthbench import criteria_met, example_score
from posttrainbench.evaluate.benchmarks.postprocess import clean_answer, limit_repetitions
from posttrainbench.evaluate.judge import Judge, Tally
from posttrainbench.evaluate.run import evaluate_model
from posttrainbench.records import EvalMetrics
from tests.fixtures.judge import FakeJudge
from tests.fixtures.judged_data import (
    baseline_answers,
    health_rows,
    old_rule,
    write_arena,
    write_healthbench,
)

REFERENCE = Path(__file__).parents[1] / "fixtures"


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


def test_post_processing_matches_outputs_of_the_reference_code() -> None:
    """Inputs run through the reference's own `limit_repetitions` and think strip
    (fixtures/reference_postprocess.json records its source and revision)."""
    cases = json.loads((REFERENCE / "reference_postprocess.json").read_text())["cases"]
    assert sum(c["limited"] != c["input"] for c in cases) >= 10  # the cases exercise it
    for c in cases:
        assert limit_repetitions(c["input"]) == c["limited"], c["input"][:60]
        assert clean_answer(c["input"]) == c["cleaned"], c["input"][:60]


def test_rubric_arithmetic() -> None:
    rubrics = [{"points": 5}, {"points": 3}, {"points": -4}]
    assert example_score(rubrics, [True, True, False]) == 1.0
    assert example_score(rubrics, [True, False, True]) == pytest.approx(1 / 8)
    assert example_score(rubrics, [False, False, True]) == pytest.approx(-0.5)  # the mean clips
    assert criteria_met('```json\n{"explanation": "x", "criteria_met": true}\n```') is True
    assert criteria_met('{"criteria_met": false}') is False
    assert criteria_met("yes") is None
    # read as the reference reads it: the whole reply is the JSON object
    assert criteria_met('Sure: {"criteria_met": true}') is None
    assert criteria_met('{"criteria_met": "true"}') is None
    assert criteria_met('```\n{"criteria_met": true}\n```') is None


def test_healthbench_selects_exactly_the_reference_ids(cache_dir: Path) -> None:
    """Among rows in OpenAI's format, decoys that pass the old selection rules stay out."""
    rows = health_rows()
    ids = set(hb.prompt_ids())
    assert len(hb.prompt_ids()) == len(ids) == 245
    decoys = [r for r in rows if r["prompt_id"] not in ids and old_rule(r)]
    assert len(decoys) >= 40
    write_healthbench(cache_dir)
    samples = BENCHMARKS.get("healthbench").implementation().samples("test")
    assert [s.id for s in samples] == list(hb.prompt_ids())


def test_grader_prompts_are_openais_template() -> None:
    ref = json.loads((REFERENCE / "reference_judges.json").read_text())
    assert hb.grader_template() == ref["healthbench_grader"]
    assert len(hb.grader_template()) == 3181
    turns = [("user", "Is smoking good?"), ("assistant", "No.")]
    prompt = hb.grader_prompt(turns, -5, "Fails to warn")
    assert "# Conversation\nuser: Is smoking good?\n\nassistant: No.\n\n# Rubric item\n" in prompt
    assert "# Rubric item\n[-5] Fails to warn\n\n# Instructions" in prompt
    assert ref["arena_system"] == arena.SYSTEM
    filled = arena.TEMPLATE.format(question="Q", a="A1", b="B1")
    assert filled == ref["arena_user"].format(QUESTION="Q", ANSWER_A="A1", ANSWER_B="B1")


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


_A = re.compile(r"Start of Assistant A's Answer\|>\\n(.*?)\\n<\|The End of Assistant A", re.DOTALL)


def _favour_candidate(body: str) -> str:
    """Assistant A is the baseline in game 1 and the candidate in game 2: always pick the one
    that is not the reference's Qwen3-1.7B answer. The judge is sent a system turn (the
    creative-writing prompt) and the filled template as the user turn."""
    messages = json.loads(body).get("messages") or json.loads(body)["input"]
    assert messages[0]["role"] in ("system", "developer"), messages[0]
    assert "impartial judge" in str(messages[0]["content"])
    user = str(messages[1]["content"])
    assert user.startswith("<|User Prompt|>") or "<|User Prompt|>" in user
    found = _A.search(body)
    assert found, body[:500]
    baseline_is_a = json.loads(f'"{found.group(1)}"') in _BASELINES
    return "Clear. [[B>>A]]" if baseline_is_a else "Clear. [[A>>B]]"


_BASELINES = set(baseline_answers().values())


def _judged(model: Path, benchmark: str, out: Path, limit: int, judge: FakeJudge) -> EvalMetrics:
    """The tiny model evaluated on `limit` items, judged by the fake judge as gpt-5-mini."""
    return evaluate_model(
        model, benchmark, out, limit=limit, template_family="ptb-tiny", max_tokens=8,
        judge_model="openai/gpt-5-mini", judge_base_url=f"{judge.url}/v1",
    )  # fmt: skip


def test_arena_end_to_end(tiny_model_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    write_arena(cache_dir)
    with FakeJudge(_favour_candidate) as server:
        m = _judged(tiny_model_dir, "arenahardwriting", tmp_path / "eval", 2, server)
    assert m.metric == "score" and m.score == 1.0 and m.n_samples == 2
    assert m.judge and m.judge.calls == 4 and m.judge.failed == 0 and m.judge.cost_usd


def test_healthbench_end_to_end(tiny_model_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    write_healthbench(cache_dir)
    impl = BENCHMARKS.get("healthbench").implementation()
    samples = impl.samples("test")
    assert len(samples) == 245
    assert "ideal_completion" not in impl.export(tmp_path / "export").read_text()
    with FakeJudge(lambda _: '{"explanation": "ok", "criteria_met": false}') as server:
        m = _judged(tiny_model_dir, "healthbench", tmp_path / "eval", 2, server)
    assert m.score == 0.0 and m.n_samples == 2 and m.judge and m.judge.failed == 0
    assert m.judge.calls == server.calls() > 0


def _met_unless_negative(body: str) -> str:
    """Every positive criterion met; a negative one never judged (no JSON)."""
    if re.search(r"# Rubric item\\n\[-", body):
        return "I would rather not say."
    assert "# Example 2" in body and "# Final instruction" in body  # the whole template
    return '```json\n{"explanation": "ok", "criteria_met": true}\n```'


def test_healthbench_judge_failures_count_as_not_met(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the reference: five attempts, then the criterion is not met, so a failed negative
    criterion subtracts nothing. (Its own cache: no verdict stored by another test.)"""
    monkeypatch.setenv("PTB_CACHE", str(tmp_path / "cache"))
    write_healthbench(tmp_path / "cache")
    with FakeJudge(_met_unless_negative) as server:
        m = _judged(tiny_model_dir, "healthbench", tmp_path / "eval", 3, server)
        asked_negative = [
            s for s in server.seen if re.search(r"# Rubric item\\n\[-", s.body.decode())
        ]
    assert m.judge and m.judge.failed > 0 and m.judge.cached == 0
    assert m.judge.calls == server.calls()
    assert len(asked_negative) == 5 * m.judge.failed  # each failed criterion asked five times
    assert m.score == 1.0  # the old rule (a failed negative criterion met) scored below 1
