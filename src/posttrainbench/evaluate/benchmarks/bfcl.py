"""BFCL `exec_simple`: 100 single-turn function-calling items; one call, right name and arguments.

Data: HF `gorilla-llm/Berkeley-Function-Calling-Leaderboard` at the pinned revision: the
question file `BFCL_v*_exec_simple.json` (JSON lines: id, question, function) and its ground
truth (`possible_answer/BFCL_v*_exec_simple.json`, or a `ground_truth` field), written as Python
calls (`calc_binomial_probability(n=20, k=5, p=0.6)`). NB: the hub dataset names this split
`train`, but it IS the test set — training on it is contamination.

Each item's functions become the sample's tools (BFCL's `dict`/`float`/`tuple` types mapped to
JSON schema); the model's call is recorded, never executed. The calls are the ones the backend
parsed, as in the reference: vLLM's `hermes` parser (`--tool-call-parser hermes`), or the same
rule on the `hf` backend (evaluate/hermes.py) — a fenced or malformed block inside `<tool_call>`
voids every call of the response. A response is correct when it holds exactly one tool call whose
name equals the target's and whose arguments equal the target's after JSON normalisation (an int
equals the same float; tuples are lists; nothing missing, nothing extra).
"""

from __future__ import annotations

import ast
import json
from typing import TYPE_CHECKING, Any

from posttrainbench.evaluate.benchmarks.base import (
    Benchmark,
    TaskOptions,
    sample_seed,
)

if TYPE_CHECKING:
    from inspect_ai import Task
    from inspect_ai.dataset import Sample

QUESTIONS = ("BFCL_v*_exec_simple.json",)  # at the root; answers live in possible_answer/
ANSWERS = ("possible_answer/BFCL_v*_exec_simple.json",)
# BFCL's type names as the reference's inspect_evals solver maps them ("any": no type at all)
_TYPES: dict[str, str | None] = {
    "dict": "object", "float": "number", "tuple": "array", "bool": "boolean", "any": None
}  # fmt: skip

Call = tuple[str, dict[str, Any]]


def parse_call(text: str) -> Call:
    """(name, keyword arguments) of a ground-truth call written in Python."""
    node = ast.parse(text.strip(), mode="eval").body
    if not isinstance(node, ast.Call):
        raise ValueError(f"not a call: {text!r}")
    name = ast.unparse(node.func)
    return name, {kw.arg: ast.literal_eval(kw.value) for kw in node.keywords if kw.arg}


def json_schema(schema: Any) -> Any:
    """BFCL's parameter schema as JSON schema."""
    if isinstance(schema, dict):
        out = {k: json_schema(v) for k, v in schema.items()}
        kind = out.get("type")
        if isinstance(kind, str):
            mapped = _TYPES.get(kind.lower(), kind.lower())
            if mapped is None:
                del out["type"]
            else:
                out["type"] = mapped
        return out
    if isinstance(schema, list):
        return [json_schema(v) for v in schema]
    return schema


def normalise(value: Any) -> Any:
    """JSON-normalised value: tuples are lists, integral floats are ints, keys sorted."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int | float):
        return value
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {str(k): normalise(v) for k, v in sorted(value.items())}
    return value


def calls_of(parsed: list[Any] | None) -> list[Call]:
    """The response's tool calls as the backend parsed them (none parsed: none made)."""
    return [(c.function, dict(c.arguments or {})) for c in parsed or []]


def judge_calls(calls: list[Call], target: Call) -> tuple[bool, str]:
    if len(calls) != 1:
        return False, f"{len(calls)} tool calls, expected exactly 1"
    name, args = calls[0]
    if name != target[0]:
        return False, f"called {name}, expected {target[0]}"
    got, want = normalise(args), normalise(target[1])
    if got != want:
        return False, f"arguments {json.dumps(got)} != {json.dumps(want)}"
    return True, "match"


class Bfcl(Benchmark):
    input_fields = ("functions",)

    def _records(self) -> list[dict[str, Any]]:
        from posttrainbench.evaluate.data import hub_snapshot, read_rows, snapshot_files

        root = hub_snapshot(self.hub_source(), self.info.id)
        questions = [r for f in snapshot_files(root, QUESTIONS) for r in read_rows(f)]
        answers = {r["id"]: r for f in snapshot_files(root, ANSWERS) for r in read_rows(f)}
        if not questions:
            from posttrainbench.errors import DataUnavailableError

            raise DataUnavailableError(
                f"{self.hub_source().label} has no exec_simple question file",
                f"run `ptb data prefetch --benchmarks {self.info.id}`",
            )
        for q in questions:
            truth = q.get("ground_truth") or answers.get(q["id"], {}).get("ground_truth")
            if not truth:
                from posttrainbench.errors import DataUnavailableError

                raise DataUnavailableError(f"BFCL item {q['id']} has no ground truth")
            q["ground_truth"] = truth[0] if isinstance(truth, list) else truth
        return questions

    def samples(self, split: str) -> list[Sample]:
        from inspect_ai.dataset import Sample

        samples = []
        for r in self._records():
            turns = (
                r["question"][0]
                if r["question"] and isinstance(r["question"][0], list)
                else r["question"]
            )
            name, args = parse_call(r["ground_truth"])
            samples.append(
                Sample(
                    id=r["id"],
                    input=[{"role": t["role"], "content": t["content"]} for t in turns],  # type: ignore[misc]
                    target=json.dumps({"name": name, "arguments": args}),
                    metadata={"functions": r["function"]},
                )
            )
        return samples

    def build(self, samples: list[Sample], opts: TaskOptions) -> Task:
        from inspect_ai import Task
        from inspect_ai.dataset import MemoryDataset

        return Task(
            name="bfcl",
            dataset=MemoryDataset(samples, name="bfcl"),
            solver=call_tools_once(opts.seed),
            scorer=tool_call_match(),
        )


def call_tools_once(run_seed: int) -> Any:
    """Give the sample's functions as tools and record the model's calls without running them."""
    from inspect_ai.solver import Generate, TaskState, solver
    from inspect_ai.tool import ToolDef, ToolParams

    async def never_run(**kwargs: Any) -> str:  # calls are recorded (tool_calls="none")
        raise RuntimeError("BFCL tools are never executed")

    @solver(name="call_tools_once")
    def _solver() -> Any:
        async def solve(state: TaskState, generate: Generate) -> TaskState:
            state.tools = [
                ToolDef(
                    never_run,
                    name=f["name"],
                    description=f.get("description") or f["name"],
                    parameters=ToolParams.model_validate(
                        json_schema(f.get("parameters") or {"type": "object"})
                    ),
                )
                for f in state.metadata["functions"]
            ]
            seed = sample_seed(run_seed, state.sample_id, state.epoch)
            return await generate(state, tool_calls="none", seed=seed)

        return solve

    return _solver()


def tool_call_match() -> Any:
    from inspect_ai.scorer import CORRECT, INCORRECT, Score, Target, accuracy, scorer, stderr
    from inspect_ai.solver import TaskState

    @scorer(metrics=[accuracy(), stderr()], name="tool_call_match")
    def _tool_call_match() -> Any:
        async def score(state: TaskState, target: Target) -> Score:
            want = json.loads(target.text)
            message = state.output.message
            calls = calls_of(message.tool_calls if message else None)
            ok, why = judge_calls(calls, (want["name"], want["arguments"]))
            return Score(
                value=CORRECT if ok else INCORRECT,
                answer=json.dumps([{"name": n, "arguments": a} for n, a in calls]),
                explanation=why,
            )

        return score

    return _tool_call_match()
