"""HumanEval: 164 Python problems, pass@1 by running each problem's tests on the completion.

Data: HF `openai/openai_humaneval` (`openai_humaneval/test-*.parquet`: task_id, prompt,
canonical_solution, test, entry_point), at the revision inspect_evals pins. The model is asked
for the whole function; a completion that defines the entry point replaces the prompt's stub,
anything else is taken as the function's body. The program runs in the `ptb` sandbox
(bubblewrap, no network, rlimits; see evaluate/code_sandbox.py), never in the grader's process.
Canonical solutions are not part of the samples, so they never reach the agent's workspace.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from posttrainbench.evaluate.benchmarks.base import Benchmark, TaskOptions, seeded_generate

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.dataset import Sample

VERIFY_TIMEOUT_S = 30
INSTRUCTION = (
    "Read the following function signature and docstring, and fully implement the function "
    "described. Your response should only contain the code for this function.\n\n"
)
_FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\r?\n(.*?)```", re.DOTALL)


def find_code(completion: str) -> str:
    """The code of a completion: its first fenced block, else the text itself."""
    blocks = _FENCE.findall(completion)
    return (blocks[0] if blocks else completion).replace("\r\n", "\n")


def program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """The file that is run: the problem's prompt (imports, helpers, the stub), the model's
    code, the tests and the call of `check`."""
    code = find_code(completion)
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        body = f"{prompt}\n    pass\n\n{code}"  # the full function replaces the stub
    else:
        body = prompt + code
    return f"{body}\n\n{test}\n\ncheck({entry_point})\n"


class HumanEval(Benchmark):
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

        import posttrainbench.evaluate.code_sandbox  # noqa: F401  (registers the sandbox)

        return Task(
            name="humaneval",
            dataset=MemoryDataset(samples, name="humaneval"),
            solver=seeded_generate(opts.seed),
            scorer=passes_tests(),
            sandbox=opts.code_sandbox,
        )


def passes_tests() -> Any:
    from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr
    from inspect_ai.solver import TaskState
    from inspect_ai.util import sandbox

    @scorer(metrics=[accuracy(), stderr()], name="passes_tests")
    def _passes_tests() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            meta = state.metadata
            code = program(
                meta["prompt"], state.output.completion, meta["test"], meta["entry_point"]
            )
            try:
                result = await sandbox().exec(["python", "-c", code], timeout=VERIFY_TIMEOUT_S)
                ok, detail = result.success, result.stderr[-2000:]
            except TimeoutError:
                ok, detail = False, f"timed out after {VERIFY_TIMEOUT_S} s"
            from posttrainbench.evaluate.code_sandbox import isolation

            return Score(
                value=CORRECT if ok else INCORRECT,
                answer=find_code(state.output.completion),
                explanation=detail or None,
                metadata={"isolation": isolation()},
            )

        return score

    return _passes_tests()
