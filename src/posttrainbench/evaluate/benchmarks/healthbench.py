"""HealthBench (the reference's 245 conversations): multi-turn health chats graded per rubric item.

Data: OpenAI's full HealthBench file (`2025-05-07-06-14-12_oss_eval.jsonl`, 5,000 rows, in the
data cache), of which exactly the 245 `prompt_id`s the reference evaluates are kept
(data/healthbench_v1_ids.txt, its order). Each rubric criterion is judged on its own with
OpenAI's grader template, verbatim (data/healthbench_grader.txt), on the conversation plus the
answer post-processed as the reference does (postprocess.py); the judge's reply is read as the
reference reads it (a JSON object, optionally in a ```json fence, whose `criteria_met` is a
boolean). An example scores Σ points of met criteria (negative ones subtract) / Σ positive
points; the benchmark's score is the mean clipped to [0, 1]. As in the reference, the judge is
asked up to five times, and a criterion it never answers counts as not met (reported under
`judge.failed`). Ideal completions never enter the samples, so they never reach the agent's
workspace (the reference copied them there).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from posttrainbench.evaluate.benchmarks.base import Benchmark, TaskOptions, seeded_generate
from posttrainbench.evaluate.benchmarks.postprocess import clean_answer

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from inspect_ai import Task
    from inspect_ai.dataset import Sample

FILE = "healthbench_oss_eval.jsonl"
JUDGE_ATTEMPTS = 5  # the reference's API_MAX_RETRY for this grader
_FENCE = re.compile(r"^```json\s*|\s*```$")
_REASONING_JUDGES = ("gpt-5", "o1", "o3")


@cache
def prompt_ids() -> tuple[str, ...]:
    """The reference's 245 prompt ids, in its order."""
    text = files(__package__).joinpath("data/healthbench_v1_ids.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.split("\n") if line.strip())


@cache
def grader_template() -> str:
    text = files(__package__).joinpath("data/healthbench_grader.txt").read_text("utf-8")
    return text.strip()


def grader_prompt(conversation: Sequence[tuple[str, str]], points: float, criterion: str) -> str:
    """OpenAI's grader prompt for one rubric item: `role: content` turns, `[points] criterion`."""
    turns = "\n\n".join(f"{role}: {content}" for role, content in conversation)
    template = grader_template()
    return template.replace("<<conversation>>", turns).replace(
        "<<rubric_item>>", f"[{points}] {criterion}"
    )


def judge_settings(model: str) -> dict[str, Any]:
    """What the reference asks of the grader: a reasoning model gets a 49,152-token budget and
    its default temperature, any other temperature 0 and 512 tokens."""
    if any(name in model for name in _REASONING_JUDGES):
        return {"max_tokens": 49152}
    return {"temperature": 0.0, "max_tokens": 512}


def selected_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the reference's ids, in its order (the first row of a repeated id)."""
    by_id: dict[str, dict[str, Any]] = {}
    for row in rows:
        by_id.setdefault(row["prompt_id"], row)
    return [by_id[i] for i in prompt_ids() if i in by_id]


def criteria_met(reply: str) -> bool | None:
    """The reply's `criteria_met`, read as the reference reads it; None when it has none."""
    try:
        value = json.loads(_FENCE.sub("", reply.strip()))
    except json.JSONDecodeError:
        return None
    met = value.get("criteria_met") if isinstance(value, dict) else None
    return met if isinstance(met, bool) else None


def example_score(rubrics: list[dict[str, Any]], met: list[bool]) -> float:
    """Σ points of met criteria / Σ positive points (not clipped: the mean is)."""
    possible = sum(c["points"] for c in rubrics if c["points"] > 0)
    achieved = sum(c["points"] for c, m in zip(rubrics, met, strict=True) if m)
    return achieved / possible if possible else 0.0


class HealthBench(Benchmark):
    def samples(self, split: str) -> list[Sample]:
        from inspect_ai.dataset import Sample

        return [
            Sample(
                id=row["prompt_id"],
                input=[{"role": m["role"], "content": m["content"]} for m in row["prompt"]],  # type: ignore[misc]
                target="",
                metadata={"rubrics": row["rubrics"], "tags": row.get("example_tags", [])},
            )
            for row in self._rows()
        ]

    def _rows(self) -> list[dict[str, Any]]:
        from posttrainbench.evaluate.data import read_rows, url_file

        return selected_rows(read_rows(url_file(self.url_source(FILE), self.info.id)))

    def test_texts(self, split: str = "test") -> Iterator[tuple[str, str]]:
        for row in self._rows():
            ideal = (row.get("ideal_completions_data") or {}).get("ideal_completion") or ""
            turns = "\n".join(m["content"] for m in row["prompt"])
            yield row["prompt_id"], f"{turns}\n{ideal}"

    def build(self, samples: list[Sample], opts: TaskOptions) -> Task:
        from inspect_ai import Task
        from inspect_ai.dataset import MemoryDataset

        from posttrainbench.evaluate.judge import Judge, require_judge

        model = require_judge(opts.judge_model, self.info.id)
        judge = Judge(
            model,
            base_url=opts.judge_base_url,
            settings=judge_settings(model),
            attempts=JUDGE_ATTEMPTS,
        )
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
            answer = clean_answer(state.output.completion)
            prompt = state.input if isinstance(state.input, list) else []
            turns = [(m.role, m.text) for m in prompt] + [("assistant", answer)]
            tally = Tally(model=judge.model)
            met: list[bool] = []
            for c in state.metadata["rubrics"]:
                asked = grader_prompt(turns, c["points"], c["criterion"])
                j = await judge.ask(asked, criteria_met, tally)
                met.append(bool(j.value))  # never judged: not met, as the reference counts it
            return Score(
                value=example_score(state.metadata["rubrics"], met),
                answer=answer[-2000:],
                metadata={"criteria_met": met, "judge": tally.as_metadata()},
            )

        return score

    return _grader()
