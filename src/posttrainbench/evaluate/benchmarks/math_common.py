"""What GSM8K and AIME share: the prompt that asks for `ANSWER: x` and the exact-number
scorer (see evaluate/answers.py)."""

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


def exact_number() -> Any:
    """Correct when the completion's final answer equals the target as a number."""
    from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr
    from inspect_ai.solver import TaskState

    from posttrainbench.evaluate.answers import final_answer, numbers_equal

    @scorer(metrics=[accuracy(), stderr()], name="exact_number")
    def _exact_number() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            answer = final_answer(state.output.completion)
            right = numbers_equal(answer, target.text)
            return Score(
                value=CORRECT if right else INCORRECT,
                answer=answer,
                explanation=state.output.completion[-2000:],
            )

        return score

    return _exact_number()
