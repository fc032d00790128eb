"""Arena-Hard v2.0 Writing: 250 creative-writing prompts judged pairwise against Qwen3-1.7B.

Data (pinned files in the data cache): arena-hard-auto v2.0 `question.jsonl` (the
`creative_writing` category) and the reference's fixed answers of Qwen3-1.7B (instruct). Each
prompt is two games — baseline as A then as B — judged with the arena-hard creative-writing judge
prompt; verdicts `[[A>>B]]`… are read with the published regexes; a strong verdict counts three
battles, and the score is the candidate's mean over all battles, as the reference computes it.
The judge gets the creative-writing system prompt as a system turn and the filled template as
the user turn, as the reference sends them. Answers are post-processed as the reference does
(evaluate/benchmarks/postprocess.py). Fixed here (DEVIATIONS.md): an unparsable verdict is asked
again, and a game whose judgment still fails counts as a lost battle and is reported
(`judge.failed`), never dropped.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from posttrainbench.evaluate.benchmarks.base import Benchmark, TaskOptions, seeded_generate
from posttrainbench.evaluate.benchmarks.postprocess import clean_answer

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.dataset import Sample

CATEGORY = "creative_writing"
JUDGE_ATTEMPTS = 3  # the reference's API_MAX_RETRY for this judge
JUDGE_SETTINGS = {"reasoning_effort": "medium", "max_tokens": 49152}  # as the reference asks
WEIGHT = 3  # battles per strong verdict
PATTERNS = (re.compile(r"\[\[([AB<>=]+)\]\]"), re.compile(r"\[([AB<>=]+)\]"))
# candidate's battles when the candidate is B (game 1); game 2 swaps A and B
AS_B: dict[str, list[float]] = {
    "A>>B": [0] * WEIGHT,
    "A>B": [0],
    "A=B": [0.5],
    "B>A": [1],
    "B>>A": [1] * WEIGHT,
}
SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two "
    "AI assistants to the user prompt displayed below. You will be given assistant A's answer "
    "and assistant B's answer. Your job is to evaluate which assistant's answer is better.\n\n"
    "When evaluating the assistants' answers, compare both assistants' answers. You must "
    "identify and correct any mistakes or inaccurate information.\n\n"
    "Then consider if the assistant's answers are helpful, relevant, and concise. Helpful means "
    "the answer correctly responds to the prompt or follows the instructions. Note when user "
    "prompt has any ambiguity or more than one interpretation, it is more helpful and "
    "appropriate to ask for clarifications or more information from the user than providing an "
    "answer based on assumptions. Relevant means all parts of the response closely connect or "
    "are appropriate to what is being asked. Concise means the response is clear and not "
    "verbose or excessive.\n\n"
    "Then consider the creativity and novelty of the assistant's answers when needed. Finally, "
    "identify any missing important information in the assistants' answers that would be "
    "beneficial to include when responding to the user prompt.\n\n"
    "After providing your explanation, you must output only one of the following choices as "
    "your final verdict with a label:\n\n"
    "1. Assistant A is significantly better: [[A>>B]]\n"
    "2. Assistant A is slightly better: [[A>B]]\n"
    "3. Tie, relatively the same: [[A=B]]\n"
    "4. Assistant B is slightly better: [[B>A]]\n"
    "5. Assistant B is significantly better: [[B>>A]]\n\n"
    'Example output: "My final verdict is tie: [[A=B]]".'
)
TEMPLATE = (
    "<|User Prompt|>\n{question}\n\n<|The Start of Assistant A's Answer|>\n{a}\n"
    "<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's Answer|>\n{b}\n"
    "<|The End of Assistant B's Answer|>"
)
# every label the regexes can read, in the A-first form AS_B knows
CANONICAL = {
    "A>>B": "A>>B", "A>B": "A>B", "A=B": "A=B", "B>A": "B>A", "B>>A": "B>>A",
    "A<<B": "B>>A", "A<B": "B>A", "B=A": "A=B", "B<<A": "A>>B", "B<A": "A>B",
}  # fmt: skip


def verdict(judgment: str) -> str | None:
    """The last verdict label of a judgment, in the A-first form; None if there is none."""
    for pattern in PATTERNS:
        found = [m for m in pattern.findall(judgment.upper()) if m]
        if found:
            return CANONICAL.get(found[-1].strip())
    return None


def battles(game1: str | None, game2: str | None) -> list[float]:
    """The candidate's battles: game 1 has the candidate as B, game 2 as A; a failed game is
    one lost battle."""
    out: list[float] = [float(x) for x in AS_B[game1]] if game1 else [0.0]
    out += [1.0 - x for x in AS_B[game2]] if game2 else [0.0]
    return out


class ArenaHardWriting(Benchmark):
    def samples(self, split: str) -> list[Sample]:
        from inspect_ai.dataset import Sample

        from posttrainbench.evaluate.data import read_rows, url_file

        questions = [
            q
            for q in read_rows(url_file(self.url_source("question.jsonl"), self.info.id))
            if q.get("category") == CATEGORY
        ]
        answers = {}
        for row in read_rows(url_file(self.url_source("Qwen3-1.7B.jsonl"), self.info.id)):
            content = row["messages"][-1]["content"]
            answers[row["uid"]] = content["answer"] if isinstance(content, dict) else content
        return [
            Sample(
                id=q["uid"],
                input=q["prompt"],
                target="",
                metadata={"baseline_answer": answers.get(q["uid"], "")},
            )
            for q in questions
        ]

    def test_texts(self, split: str = "test") -> Any:
        for s in self.samples(split):
            yield str(s.id), str(s.input)

    def build(self, samples: list[Sample], opts: TaskOptions) -> Task:
        from inspect_ai import Task
        from inspect_ai.dataset import MemoryDataset

        from posttrainbench.evaluate.judge import Judge, require_judge

        judge = Judge(
            require_judge(opts.judge_model, self.info.id),
            base_url=opts.judge_base_url,
            settings=dict(JUDGE_SETTINGS),
            attempts=JUDGE_ATTEMPTS,
        )
        return Task(
            name="arenahardwriting",
            dataset=MemoryDataset(samples, name="arenahardwriting"),
            solver=seeded_generate(opts.seed),
            scorer=pairwise(judge),
        )


def pairwise(judge: Any) -> Any:
    from inspect_ai.scorer import Score, Target, scorer
    from inspect_ai.solver import TaskState

    from posttrainbench.evaluate.benchmarks.metrics import battle_mean
    from posttrainbench.evaluate.judge import Tally

    @scorer(metrics=[battle_mean()], name="pairwise_vs_baseline")
    def _pairwise() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            question = state.input_text
            candidate = clean_answer(state.output.completion)
            baseline = state.metadata["baseline_answer"]
            tally = Tally(model=judge.model)
            games = []
            for a, b in ((baseline, candidate), (candidate, baseline)):
                prompt = TEMPLATE.format(question=question, a=a, b=b)
                games.append(await judge.ask(prompt, verdict, tally, system=SYSTEM))
            got = battles(games[0].value, games[1].value)
            return Score(
                value=sum(got) / len(got),
                answer=candidate[-2000:],
                explanation=json.dumps([g.value or g.error for g in games]),
                metadata={"battles": got, "judge": tally.as_metadata()},
            )

        return score

    return _pairwise()
