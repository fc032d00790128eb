"""HumanEval: 164 Python problems, pass@1 by running each problem's tests on the completion.

Data: HF `openai/openai_humaneval` (`openai_humaneval/test-*.parquet`: task_id, prompt,
canonical_solution, test, entry_point), at the revision inspect_evals pins. The model is asked
for the whole function; a completion that defines the entry point replaces the prompt's stub,
anything else is taken as the function's body. Answers are checked in isolation (v1.2): the
tests run in a sandboxed checker and each call of the model's function in a fresh sandbox of its
own, only plain values crossing (evaluate/answer_check.py), never in the grader's process.
Canonical solutions are not part of the samples, so they never reach the agent's workspace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from posttrainbench.evaluate.answer_check import find_code
from posttrainbench.evaluate.benchmarks.base import Benchmark, TaskOptions, seeded_generate

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.dataset import Sample

# inspect_evals' INSTRUCTION as the reference sends it: it starts with a newline, breaks lines
INSTRUCTION = (
    "\nRead the following function signature and docstring, and fully implement\n"
    "the function described. Your response should only contain the code for\n"
    "this function.\n\n"
)


class HumanEval(Benchmark):
    input_fields = ("prompt", "entry_point")

    def _rows(self, split: str) -> list[dict[str, Any]]:
        from posttrainbench.evaluate.data import hub_rows

        return hub_rows(self.hub_source(), (f"openai_humaneval/{split}-*.parquet",), self.info.id)

    def samples(self, split: str) -> list[Sample]:
        from inspect_ai.dataset import Sample

        return [
            Sample(
                id=row["task_id"],
                input=INSTRUCTION + row["prompt"],
                target="",
                metadata={
                    "prompt": row["prompt"],
                    "test": row["test"],
                    "entry_point": row["entry_point"],
                },
            )
            for row in self._rows(split)
        ]

    def test_texts(self, split: str = "test") -> Any:
        for row in self._rows(split):
            yield row["task_id"], f"{row['prompt']}\n{row['canonical_solution']}"

    def build(self, samples: list[Sample], opts: TaskOptions) -> Task:
        from inspect_ai import Task
        from inspect_ai.dataset import MemoryDataset

        from posttrainbench.evaluate import code_sandbox

        code_sandbox.isolation()  # no isolation, no generation: refuse before the model runs
        return Task(
            name="humaneval",
            dataset=MemoryDataset(samples, name="humaneval"),
            solver=seeded_generate(opts.seed),
            scorer=passes_tests(),
        )


def passes_tests() -> Any:
    from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr
    from inspect_ai.solver import TaskState

    @scorer(metrics=[accuracy(), stderr()], name="passes_tests")
    def _passes_tests() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            from posttrainbench.evaluate.answer_check import check_answer

            meta = state.metadata
            verdict = await check_answer(
                meta["prompt"], state.output.completion, meta["test"], meta["entry_point"]
            )
            return Score(
                value=CORRECT if verdict.passed else INCORRECT,
                answer=find_code(state.output.completion),
                explanation=verdict.reason + (f"\n{verdict.detail}" if verdict.detail else ""),
                metadata=verdict.model_dump(exclude={"detail"}),
            )

        return score

    return _passes_tests()
