"""The fidelity record: per benchmark, what we ask and how we score, against the reference.

Render: for the first items of each benchmark's fixture data, the prompt our evaluation sends
(the task's samples after `make_task`; our solvers add nothing before generating) must equal,
byte for byte, the reference's prompt written by tests/fixtures/fidelity/make_expected.py from
the reference's own template strings; for Qwen3 also the final chat-templated text.

Score: recorded outputs, each with the verdict the reference's rule gives and a one-line reason
naming that rule; where we differ on purpose, `deviation` names the DEVIATIONS.md row and the
expectation is ours. Judged benchmarks: recorded judge replies parsed into verdicts and criteria,
and the exact messages the judge gets for a recorded answer. HumanEval runs the real isolated
checker. A failing test names the benchmark that drifted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.evaluate import hermes
from posttrainbench.evaluate.benchmarks import arenahardwriting as arena
from posttrainbench.evaluate.benchmarks import healthbench as hb
from posttrainbench.evaluate.benchmarks.base import TaskOptions, make_task
from posttrainbench.evaluate.benchmarks.bfcl import judge_calls
from posttrainbench.evaluate.benchmarks.gpqamain import letter_match
from posttrainbench.evaluate.benchmarks.humaneval import passes_tests
from posttrainbench.evaluate.benchmarks.math_common import exact_number
from posttrainbench.evaluate.chat_templates import read_template
from posttrainbench.evaluate.judge import Judgment
from tests.fixtures.code_data import humaneval_rows, write_humaneval
from tests.fixtures.hub import hf_home
from tests.fixtures.judged_data import write_arena, write_healthbench
from tests.fixtures.math_data import write_aime, write_gpqa, write_gsm8k

EXPECTED = Path(__file__).parents[1] / "fixtures" / "fidelity"
RENDERED = ("aime2025", "gsm8k", "gpqamain", "humaneval", "arenahardwriting", "healthbench")
JUDGE = "openai/gpt-5-mini"


class Case(NamedTuple):
    output: str
    target: str
    right: bool  # our verdict: the reference's, unless `deviation` says why not
    why: str
    deviation: str = ""


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each rendered benchmark's task over its fixture data, built as the evaluation builds it."""
    root = tmp_path_factory.mktemp("fidelity")
    with pytest.MonkeyPatch.context() as mp, hf_home(root / "hf") as hf:
        mp.setenv("PTB_CACHE", str(root / "cache"))
        write_aime(hf)
        write_gsm8k(hf)
        write_gpqa(hf)
        write_humaneval(hf)
        write_arena(root / "cache")
        write_healthbench(root / "cache")
        built = {}
        for bench in RENDERED:
            impl = BENCHMARKS.get(bench).implementation()
            built[bench] = make_task(impl, TaskOptions(judge_model=JUDGE))
        yield built


def messages_of(sample: Any) -> list[dict[str, str]]:
    if isinstance(sample.input, str):
        return [{"role": "user", "content": sample.input}]
    return [{"role": m.role, "content": m.text} for m in sample.input]


def expected_prompts(bench: str) -> dict[str, list[dict[str, str]]]:
    data: dict[str, list[dict[str, str]]] = json.loads(
        (EXPECTED / bench / "prompts.json").read_text(encoding="utf-8")
    )
    return data


def our_prompts(task: Any, ids: list[str]) -> dict[str, list[dict[str, str]]]:
    by_id = {str(s.id): s for s in task.dataset}
    return {i: messages_of(by_id[i]) for i in ids if i in by_id}


@pytest.mark.parametrize("bench", RENDERED)
def test_prompt_is_the_reference_prompt(bench: str, tasks: dict[str, Any]) -> None:
    want = expected_prompts(bench)
    got = our_prompts(tasks[bench], list(want))
    assert list(got) == list(want), f"{bench}: items missing from our samples"
    for item, messages in want.items():
        assert got[item] == messages, f"{bench} {item}: prompt drifted from the reference"


@pytest.mark.parametrize("bench", RENDERED)
def test_qwen3_text_is_the_reference_text(bench: str, tasks: dict[str, Any]) -> None:
    from tests.fixtures.models import tokenizer

    first = next(iter(expected_prompts(bench)))
    [messages] = our_prompts(tasks[bench], [first]).values()
    ours = tokenizer("qwen3").apply_chat_template(
        messages, chat_template=read_template("qwen3"), add_generation_prompt=True, tokenize=False
    )
    assert ours == (EXPECTED / bench / "qwen3.txt").read_text(encoding="utf-8"), bench


# ---------------------------------------------------------------- scoring: exact answers


def run_scorer(scorer: Any, output: str, target: str, **state: Any) -> Any:
    from inspect_ai.model import ModelOutput
    from inspect_ai.scorer import Target
    from inspect_ai.solver import TaskState

    task_state = TaskState(
        model="mockllm/model",  # type: ignore[arg-type]
        sample_id="fidelity",
        epoch=1,
        input=state.pop("input", "question"),
        messages=[],
        output=ModelOutput.from_content("mockllm/model", output),
        **state,
    )
    return asyncio.run(scorer(task_state, Target(target)))


# The reference's final math rule (aisa-group/PostTrainBench src/eval/exact_numeric_match.py,
# over inspect_ai's match(numeric=True) extraction): drop `$ £ € , * _` and dots not followed by
# a digit, take the last whitespace-separated word that is a number; AIME first applies
# inspect_evals' remove_boxed_from_ans.
RULE = "last number word"
AIME = [
    Case("Work.\nANSWER: 70", "70", True, f"{RULE}: 70"),
    Case("ANSWER: \\boxed{70}", "70", True, "remove_boxed_from_ans unwraps, then 70"),
    Case("so the result is \\boxed{70}.", "70", True, "unwrapped; the final dot is dropped"),
    Case("ANSWER: 70\n\nNote: 5 steps", "70", False, f"{RULE} is 5, not the ANSWER line"),
    Case("ANSWER: 170", "70", False, "equality, never endswith (the reference's final fix)"),
    Case("<think>\nmaybe 70\n</think>\nANSWER: 71", "70", False, "think text stays; last is 71"),
    Case("<think>\nso it is 70\n</think>", "70", True, "no reasoning parser: think text scored"),
    Case("ANSWER: **70**.", "70", True, "`*` and the final dot are numeric punctuation"),
    Case("ANSWER: 70.0", "70", True, "normalised by value"),
    Case("```python\nprint(70)\n```", "70", False, "no word is a number"),
    Case("I cannot solve this problem.", "70", False, "refusal: no number"),
    Case("", "70", False, "empty output: no number"),
    Case("ANSWER: 11.0001", "11", False, "5 significant digits: right there",
         deviation="AIME 2025: compared with the target exactly, by value"),
    Case("x = 70\nANSWER: -5", "70", False, "the reference skips -5 and reads 70",
         deviation="AIME 2025: A leading `-` belongs to the number"),
    Case("ANSWER: 2⁴", "16", False, "inspect's unicode parser reads 16",
         deviation="AIME 2025, GSM8K: other numerals than decimal digits"),
]  # fmt: skip
GSM8K = [
    Case("Reasoning...\nANSWER: 18", "18", True, f"{RULE}: 18"),
    Case("ANSWER: $18.00.", "18", True, "`$` dropped, 18.00 equals 18"),
    Case("ANSWER: 1,006", "1006", True, "thousands commas dropped"),
    Case("ANSWER: 14000", "14,000", True, "signed_last_number_exact compares by value"),
    Case("ANSWER: 10 - 3 = 7", "7", True, f"{RULE}: 7 ('-' alone is no number)"),
    Case("ANSWER: 204\n\nNote: 5 steps", "204", False, f"{RULE} is 5"),
    Case("ANSWER: -3", "-3", True, "signed_last_number_exact reads the sign"),
    Case("ANSWER: 13", "-3", False, "by value, not text suffix"),
    Case("\\boxed{18}", "18", False, "GSM8K does not unwrap \\boxed: no number word"),
    Case("```python\nx = 18\n```", "18", True, f"{RULE} inside the fence: 18"),
    Case("<think>\n12\n</think>\nANSWER: 18", "18", True, "think text stays; last is 18"),
    Case("ANSWER: .5", "0.5", True, "'.5' is 0.5"),
    Case("I'd rather not answer that.", "18", False, "refusal: no number"),
    Case("", "18", False, "empty output"),
]  # fmt: skip


@pytest.mark.parametrize("case", AIME, ids=lambda c: c.why[:40])
def test_aime2025_scores_as_the_reference(case: Case) -> None:
    score = run_scorer(exact_number(unbox=True), case.output, case.target)
    assert (score.value == "C") is case.right, case


@pytest.mark.parametrize("case", GSM8K, ids=lambda c: c.why[:40])
def test_gsm8k_scores_as_the_reference(case: Case) -> None:
    score = run_scorer(exact_number(), case.output, case.target)
    assert (score.value == "C") is case.right, case


# inspect_ai 0.1.dev3780 (the reference's fork) multiple_choice + choice(): parse_answers takes
# the first line starting `ANSWER:`, else the first `ANSWER:` anywhere; the rest must be exactly
# one allowed letter (capital); no answer is wrong.
GPQA = [
    Case("Reasoning.\nANSWER: B", "B", True, "the ANSWER line's letter"),
    Case("… the answer is B … A good guess.", "A", False, "no ANSWER: no answer"),
    Case("… the answer is B … A good guess.", "B", False, "no ANSWER: no answer"),
    Case("ANSWER: B and C", "B", False, "not exactly one letter"),
    Case("Reasoning.\nANSWER: C.", "C", True, "a trailing period is allowed"),
    Case("ANSWER: A\nOn reflection\nANSWER: C", "C", False, "the first ANSWER line counts"),
    Case("**ANSWER: A**", "A", True, "the lenient search finds it"),
    Case("answer: d", "D", False, "keyword any case, letter must be a capital"),
    Case("<think>ANSWER: B</think>\nANSWER: C", "C", True, "strict line match wins"),
    Case("ANSWER: E", "E", False, "E is no choice of four"),
    Case("I can't help with that.", "A", False, "refusal"),
    Case("", "A", False, "empty output"),
]  # fmt: skip


@pytest.mark.parametrize("case", GPQA, ids=lambda c: c.why[:40])
def test_gpqamain_scores_as_the_reference(case: Case) -> None:
    score = run_scorer(letter_match(), case.output, case.target, choices=["w", "x", "y", "z"])
    assert (score.value == "C") is case.right, case


# inspect_evals' humaneval verify() with the v1.2 final evaluation's rule (evaluate_final_eval.py:
# check() must run to the end): find_code takes the first ```python block, else the whole
# completion; the code follows the prompt, then the tests and check(entry_point).
HE_BODY = "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"  # noqa: E501
HE_FULL = "def has_close_elements(numbers, threshold):\n" + HE_BODY
HUMANEVAL = [
    Case(f"```python\n{HE_FULL}```", "", True, "first ```python block, full function"),
    Case(f"<think>\nplan\n</think>\n```python\n{HE_FULL}```", "", True, "think text outside the block"),  # noqa: E501
    Case(HE_BODY, "", True, "no fence: the completion is the body after the prompt"),
    Case(f"```\n{HE_FULL}```", "", False, "untagged fence is not extracted: a syntax error"),
    Case("```python\nimport sys\nsys.exit(0)\n```", "", False, "exit before check() ends"),
    Case("    return False\n", "", False, "wrong answer fails the tests"),
    Case("", "", False, "empty output: the stub returns None"),
]  # fmt: skip


def test_humaneval_scores_as_the_reference_in_the_isolated_checker() -> None:
    row = next(r for r in humaneval_rows() if r["task_id"] == "HumanEval/0")
    meta = {k: row[k] for k in ("prompt", "test", "entry_point")}
    got = [run_scorer(passes_tests(), c.output, "", metadata=meta).value == "C" for c in HUMANEVAL]
    assert got == [c.right for c in HUMANEVAL], [c.why for c in HUMANEVAL]


# ---------------------------------------------------------------- scoring: judged benchmarks


@dataclass
class ScriptedJudge:
    """Stands in for `Judge`: records what it is asked and replies from a script."""

    replies: list[str]
    model: str = JUDGE
    asked: list[tuple[str | None, str]] = field(default_factory=list)

    async def ask(self, prompt: str, parse: Any, tally: Any, system: str | None = None) -> Any:
        self.asked.append((system, prompt))
        reply = self.replies[len(self.asked) - 1]
        return Judgment(parse(reply), reply, 1)


ARENA_DEVIATION = "Arena-Hard Writing: A verdict the regexes cannot read is asked again"
# arena-hard-v2.0.yaml regex_patterns, first pattern with matches wins, its last match; upper-
# cased. Labels as the candidate's battles when it is B (game 1): score_map, flipped.
VERDICTS = [
    ("My final verdict is tie: [[A=B]]", "A=B", "tie", ""),
    ("[[B>>A]]", "B>>A", "strong verdict", ""),
    ("first [[A>B]] then [[B>A]]", "B>A", "the last match counts", ""),
    ("[[a<<b]]", "B>>A", "judgment is upper-cased; A<<B is B>>A", ""),
    ("Verdict: [B>A]", "B>A", "the single-bracket pattern", ""),
    ("[[A>B]] but also [B>A]", "A>B", "the first pattern with matches wins", ""),
    ("no verdict at all", None, "no label: the reference drops the question", ARENA_DEVIATION),
    ("[[A>>>B]]", None, "not a label: the reference's score_map raises", ARENA_DEVIATION),
]  # fmt: skip


@pytest.mark.parametrize(
    ("reply", "label", "why", "deviation"), VERDICTS, ids=[v[2][:30] for v in VERDICTS]
)
def test_arenahardwriting_reads_verdicts_as_the_reference(
    reply: str, label: str | None, why: str, deviation: str
) -> None:
    assert arena.verdict(reply) == label, why


def test_arenahardwriting_judge_gets_the_reference_messages_and_battles() -> None:
    """The recorded answer is post-processed and sent in both orders with the reference's system
    prompt and template; [B>A] then [A>>B] gives the candidate 1 + 3 battles won of 4."""
    from inspect_ai.model import ChatMessageUser

    want = json.loads((EXPECTED / "arenahardwriting" / "judge.json").read_text("utf-8"))
    question = expected_prompts("arenahardwriting")[want["uid"]][0]["content"]
    baseline = want["games"][0][1]["content"]  # the baseline's answer is inside the template
    judge = ScriptedJudge(["... [[B>A]]", "... [[A>>B]]"])
    from tests.fixtures.judged_data import baseline_answers

    score = run_scorer(
        arena.pairwise(judge),
        want["answer"],
        "",
        input=[ChatMessageUser(content=question)],
        metadata={"baseline_answer": baseline_answers()[want["uid"]]},
    )
    got = [
        [{"role": "system", "content": s}, {"role": "user", "content": p}] for s, p in judge.asked
    ]
    assert got == want["games"], "arenahardwriting: judge messages drifted"
    assert baseline  # the fixture holds the real baseline answer
    assert score.metadata["battles"] == [1.0, 1.0, 1.0, 1.0] and score.value == 1.0


# Both judged tasks' generate step (arenahardwriting/evaluate.py, healthbench/evaluate.py): strip
# the answer; if it starts with <think> and holds </think>, keep what follows, stripped; then cap
# repetitions at five (limit_repetitions).
POSTPROCESS = [
    ("  <think>\nplan\n</think>\n\nThe answer.  ", "The answer.", "leading think block dropped"),
    ("<think>never closed, all reasoning", "<think>never closed, all reasoning", "no </think>"),
    ("Intro <think>x</think> rest", "Intro <think>x</think> rest", "not leading: kept"),
    ("line\n" * 8 + "end", "line\n" * 5 + "end", "a line repeated 8 times kept 5 times"),
    ("", "", "empty stays empty"),
]  # fmt: skip


@pytest.mark.parametrize(("raw", "sent", "why"), POSTPROCESS, ids=[c[2][:30] for c in POSTPROCESS])
def test_judged_answers_are_post_processed_as_the_reference(raw: str, sent: str, why: str) -> None:
    from posttrainbench.evaluate.benchmarks.postprocess import clean_answer

    assert clean_answer(raw) == sent, why


# grader.py parse_json_to_dict: strip, drop a leading ```json and a trailing ```, json.loads;
# criteria_met must be exactly True or False, else the reply is retried (never met at the end).
CRITERIA = [
    ('{"explanation": "ok", "criteria_met": true}', True, "plain JSON"),
    ('```json\n{"explanation": "no", "criteria_met": false}\n```', False, "json fence removed"),
    ('  ```json{"criteria_met": true}```  ', True, "stripped first, fence without newlines"),
    ('```\n{"criteria_met": true}\n```', None, "an untagged fence is not removed: no JSON"),
    ('{"criteria_met": "true"}', None, "a string is not a boolean"),
    ('{"criteria_met": 1}', None, "1 is not True (identity check)"),
    ('[{"criteria_met": true}]', None, "not an object"),
    ("The response meets the rubric.", None, "no JSON at all"),
    ("", None, "empty reply"),
]  # fmt: skip


@pytest.mark.parametrize(("reply", "met", "why"), CRITERIA, ids=[c[2][:30] for c in CRITERIA])
def test_healthbench_reads_grader_replies_as_the_reference(
    reply: str, met: bool | None, why: str
) -> None:
    assert hb.criteria_met(reply) is met, why


def test_healthbench_grader_gets_the_reference_prompts_and_points() -> None:
    """Each criterion's grader prompt for the recorded answer (post-processed), and the example's
    score: Σ points of met criteria / Σ positive points, negative criteria subtracting."""
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    want = json.loads((EXPECTED / "healthbench" / "judge.json").read_text("utf-8"))
    conversation = expected_prompts("healthbench")[want["prompt_id"]]
    kinds = {
        "user": ChatMessageUser,
        "assistant": ChatMessageAssistant,
        "system": ChatMessageSystem,
    }
    messages = [kinds[m["role"]](content=m["content"]) for m in conversation]
    from tests.fixtures.judged_data import real_health_rows

    rubrics = next(r for r in real_health_rows() if r["prompt_id"] == want["prompt_id"])["rubrics"]
    met = [i % 2 == 0 for i in range(len(rubrics))]
    replies = [json.dumps({"explanation": "-", "criteria_met": m}) for m in met]
    judge = ScriptedJudge(replies)
    score = run_scorer(
        hb.rubric_grader(judge), want["answer"], "", input=messages, metadata={"rubrics": rubrics}
    )
    assert [p for _, p in judge.asked] == want["graders"], "healthbench: grader prompts drifted"
    possible = sum(c["points"] for c in rubrics if c["points"] > 0)
    achieved = sum(c["points"] for c, m in zip(rubrics, met, strict=True) if m)
    assert score.value == pytest.approx(achieved / possible)
    assert score.metadata["criteria_met"] == met


# ---------------------------------------------------------------- scoring: BFCL (ptb-v1.0)

CALL = '<tool_call>\n{"name": "add", "arguments": {"a": 1, "b": 2.5}}\n</tool_call>'
FENCED = '```json\n{"name": "add", "arguments": {"a": 1, "b": 2.5}}\n```'
# vLLM's hermes parser reads the calls (evaluate/hermes.py); correct = exactly one call, the
# target's name, JSON-normalised arguments equal (inspect_evals bfcl's exec_simple rule).
BFCL = [
    Case(CALL, "add(a=1, b=2.5)", True, "one call, same name and arguments"),
    Case(CALL.replace('"a": 1', '"a": 1.0'), "add(a=1, b=2.5)", True, "1.0 equals 1 in JSON"),
    Case("<think>\nadd them\n</think>\n" + CALL, "add(a=1, b=2.5)", True, "text before the call"),
    Case(CALL + "\n" + CALL, "add(a=1, b=2.5)", False, "two calls"),
    Case(FENCED.join(("<tool_call>\n", "\n</tool_call>")), "add(a=1, b=2.5)", False,
         "fenced JSON in the block: hermes finds no call"),
    Case(FENCED, "add(a=1, b=2.5)", False, "fenced JSON without a block is text"),
    Case(CALL.replace("2.5}", '2.5, "c": 0}'), "add(a=1, b=2.5)", False, "an extra argument"),
    Case(CALL, "sub(a=1, b=2.5)", False, "another function"),
    Case("The sum is 3.5.", "add(a=1, b=2.5)", False, "no call"),
    Case("", "add(a=1, b=2.5)", False, "empty output"),
]  # fmt: skip


@pytest.mark.parametrize("case", BFCL, ids=lambda c: c.why[:40])
def test_bfcl_scores_as_the_reference(case: Case) -> None:
    from posttrainbench.evaluate.benchmarks.bfcl import parse_call

    calls = [(c.name, dict(c.arguments)) for c in hermes.parse(case.output).calls]
    ok, _ = judge_calls(calls, parse_call(case.target))
    assert ok is case.right, case


def test_every_marked_deviation_is_a_row_of_deviations_md() -> None:
    """A case scored differently from the reference on purpose names its DEVIATIONS.md row
    ("benchmark column: words of the row"); a row renamed or dropped fails here."""
    rows = (Path(__file__).parents[2] / "DEVIATIONS.md").read_text(encoding="utf-8").split("\n")
    marked = {c.deviation for c in (*AIME, *GSM8K, *GPQA, *HUMANEVAL, *BFCL) if c.deviation}
    marked |= {v[3] for v in VERDICTS if v[3]}
    assert len(marked) == 4
    for mark in marked:
        bench, words = mark.split(": ", 1)
        assert any(r.startswith(f"| {bench} |") and words in r for r in rows), mark
