"""HumanEval and BFCL on their real items: loading from the hub-cache layout, the scorers on
known right and wrong answers through the whole task, and each end to end on the tiny model."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.evaluate.benchmarks.base import TaskOptions, make_task
from posttrainbench.evaluate.benchmarks.bfcl import calls_of, judge_calls, normalise, parse_call
from posttrainbench.evaluate.run import evaluate_model
from tests.fixtures.code_data import humaneval_rows, write_bfcl, write_humaneval
from tests.fixtures.hub import hf_home

ADD = ("add", {"a": 1, "b": 2.5})


def test_ground_truth_calls_parse() -> None:
    assert parse_call("calc_binomial_probability(n=20, k=5, p=0.6)") == (
        "calc_binomial_probability", {"n": 20, "k": 5, "p": 0.6}
    )  # fmt: skip
    assert parse_call("f(v=[0.5, 0.7], s='x')") == ("f", {"v": [0.5, 0.7], "s": "x"})


@pytest.mark.parametrize(
    ("calls", "ok", "why"),
    [
        ([("add", {"a": 1, "b": 2.5})], True, "match"),
        ([("add", {"b": 2.5, "a": 1.0})], True, "match"),  # int and float of equal value
        ([("sub", {"a": 1, "b": 2.5})], False, "called sub"),
        ([("add", {"a": 2, "b": 2.5})], False, "arguments"),
        ([("add", {"a": 1})], False, "arguments"),  # missing
        ([("add", {"a": 1, "b": 2.5, "c": 0})], False, "arguments"),  # extra
        ([ADD, ADD], False, "2 tool calls"),
        ([], False, "0 tool calls"),
        ([("add", {"a": "1", "b": 2.5})], False, "arguments"),  # a string is not a number
    ],
)
def test_tool_call_judgement(calls: list[Any], ok: bool, why: str) -> None:
    got, reason = judge_calls(calls, ADD)
    assert got is ok and why in reason


def test_calls_are_the_parsed_ones_only() -> None:
    """The backend's parser reads calls (tests/unit/test_chat_templates_reference.py); the
    scorer never reads text itself, as the reference's."""
    from inspect_ai.tool import ToolCall

    assert calls_of([ToolCall(id="1", function="add", arguments={"a": 1, "b": 2.5})]) == [ADD]
    assert calls_of(None) == [] and calls_of([]) == []
    assert normalise((1.0, {"b": 2, "a": [3.0]})) == [1, {"a": [3], "b": 2}]


def test_real_items_load(tmp_path: Path) -> None:
    with hf_home(tmp_path / "hf"):
        write_bfcl(tmp_path / "hf")
        write_humaneval(tmp_path / "hf")
        bfcl = BENCHMARKS.get("bfcl").implementation().samples("test")
        he = BENCHMARKS.get("humaneval").implementation()
        assert len(bfcl) == 100 and len(he.samples("test")) == 164
        first = json.loads(str(bfcl[0].target))
        assert first == {
            "name": "calc_binomial_probability",
            "arguments": {"n": 20, "k": 5, "p": 0.6},
        }
        assert bfcl[0].metadata and bfcl[0].metadata["functions"][0]["name"] == first["name"]
        exported = he.export(tmp_path / "export")
        assert "canonical_solution" not in exported.read_text()  # never in the workspace
        assert "return" in dict(he.test_texts())["HumanEval/0"]


def _scripted(tmp_path: Path, benchmark: str, outputs: list[Any]) -> float:
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import ModelUsage, get_model

    for out in outputs:
        out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
    task = make_task(BENCHMARKS.get(benchmark).implementation(), TaskOptions(limit=len(outputs)))
    log = inspect_eval(
        task, model=get_model("mockllm/model", custom_outputs=outputs), log_dir=str(tmp_path),
        display="none", max_connections=1, max_samples=1,
    )[0]  # fmt: skip
    assert log.status == "success", log.error
    return float(log.results.scores[0].metrics["accuracy"].value)  # type: ignore[union-attr]


@pytest.mark.needs("bwrap-namespaces")
def test_humaneval_task_scores_real_solutions(tmp_path: Path) -> None:
    from inspect_ai.model import ModelOutput

    rows = humaneval_rows()[:3]
    right = [f"```python\n{r['prompt']}{r['canonical_solution']}```" for r in rows]
    wrong = ["```python\nimport os\nos.system('echo pwned > /tmp/x')\n```"] * 3
    with hf_home(tmp_path / "hf"):
        write_humaneval(tmp_path / "hf")
        outs = [ModelOutput.from_content("mockllm/model", t) for t in right]
        assert _scripted(tmp_path, "humaneval", outs) == 1.0
        outs = [ModelOutput.from_content("mockllm/model", t) for t in wrong]
        assert _scripted(tmp_path, "humaneval", outs) == 0.0


def test_bfcl_task_scores_tool_calls(tmp_path: Path) -> None:
    from inspect_ai.model import ModelOutput

    with hf_home(tmp_path / "hf"):
        write_bfcl(tmp_path / "hf")
        samples = BENCHMARKS.get("bfcl").implementation().samples("test")[:3]
        targets = [json.loads(str(s.target)) for s in samples]
        right = [
            ModelOutput.for_tool_call("mockllm/model", t["name"], t["arguments"]) for t in targets
        ]
        text = [
            ModelOutput.from_content(
                "mockllm/model", f"<tool_call>{json.dumps(targets[0])}</tool_call>"
            ),
            ModelOutput.for_tool_call("mockllm/model", "wrong_name", targets[1]["arguments"]),
            ModelOutput.from_content("mockllm/model", "I would call a function."),
        ]
        assert _scripted(tmp_path, "bfcl", right) == 1.0
        # the text call is not parsed by mockllm (no hermes parser): no credit, as in vLLM
        # without a tool-call parser
        assert _scripted(tmp_path, "bfcl", text) == 0.0


@pytest.mark.parametrize("benchmark", ["humaneval", "bfcl"])
def test_end_to_end_on_the_tiny_model(benchmark: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    with hf_home(tmp_path / "hf"):
        write_humaneval(tmp_path / "hf")
        write_bfcl(tmp_path / "hf")
        m = evaluate_model(
            tiny_model_dir, benchmark, tmp_path / "eval", limit=3, template_family="ptb-tiny",
            max_tokens=16,
        )  # fmt: skip
    assert m.n_samples == 3 and 0.0 <= m.score <= 1.0


@pytest.mark.needs("bwrap-namespaces")
def test_a_checker_that_cannot_start_is_an_infrastructure_failure(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a wrong answer: the evaluation fails as infrastructure, so the ladder retries it."""
    from posttrainbench.errors import EvaluationError
    from posttrainbench.evaluate.run import classify
    from posttrainbench.sandbox.relay.fake import FakeUpstream, Reply, Seen, chat_json

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bwrap").write_text(
        "#!/bin/sh\n"
        'case "$*" in *"--unshare-all --ro-bind / / -- /bin/true"*) exec /usr/bin/bwrap "$@";; '
        "esac\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n"
    )
    (bin_dir / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def reply(seen: Seen) -> Reply:
        if not seen.path.endswith("/chat/completions"):
            return Reply(404, [b"{}"])
        return Reply(chunks=[chat_json("    return 1\n", model=seen.json()["model"])])

    # The real entry point, in its own process as the ladder runs it: exit 4 is "retry".
    with hf_home(tmp_path / "hf"), FakeUpstream() as server:
        write_humaneval(tmp_path / "hf")
        server.handler = reply
        done = subprocess.run(
            [sys.executable, "-P", "-m", "posttrainbench.evaluate", "--benchmark", "humaneval",
             "--model-path", str(tiny_model_dir), "--limit", "1", "--template-family",
             "ptb-tiny", "--backend", "vllm", "--base-url", f"{server.url}/v1",
             "--log-dir", str(tmp_path / "eval")],
            capture_output=True, text=True, timeout=300, env=os.environ.copy(),
        )  # fmt: skip
    assert done.returncode == 4, done.stderr[-2000:]
    said = done.stderr.strip()
    assert "failed twice, not because of the answer" in said, said[-2000:]
    assert classify(EvaluationError(said)) == "infrastructure"
