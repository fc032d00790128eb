"""What GSM8K and AIME share: the exact-number scorer (the rule is in evaluate/answers.py); and
GSM8K's prompt (inspect_evals' `MATH_PROMPT_TEMPLATE`), which asks for `ANSWER: x` (AIME has
its own, aime2025.py)."""

from __future__ import annotations

from typing import Any

PROMPT = (
    "Solve the following math problem step by step. The last line of your response should be "
    'of the form "ANSWER: $ANSWER" (without quotes) where $ANSWER is the answer to the '
    "problem.\n\n{prompt}\n\n"
    'Remember to put your answer on its own line at the end in the form "ANSWER: $ANSWER" '
    "(without quotes) where $ANSWER is the answer to the problem, and you do not need to use "
    "a \\boxed command.\n\nReasoning:"
)


def exact_number(unbox: bool = False) -> Any:
    """Correct when the completion's last number equals the target exactly; `unbox` first
    unwraps `\\boxed{…}` (AIME, as inspect_evals' AIME scorer does; GSM8K does not)."""
    from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr
    from inspect_ai.solver import TaskState

    from posttrainbench.evaluate.answers import last_number, numbers_equal, strip_boxed

    @scorer(metrics=[accuracy(), stderr()], name="exact_number")
    def _exact_number() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            completion = state.output.completion
            answer = last_number(strip_boxed(completion) if unbox else completion)
            right = numbers_equal(answer, target.text)
            return Score(
                value=CORRECT if right else INCORRECT,
                answer=answer,
                explanation=completion[-2000:],
            )

        return score

    return _exact_number()
