"""The pristine evaluation through inspect-ai's hf provider on the embedded model (CPU), and the
max-token ladder of the harness's evaluation subprocess."""

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.errors import EvaluationError
from posttrainbench.evaluate import launch
from posttrainbench.evaluate.backends import BACKENDS, ModelRequest
from posttrainbench.evaluate.benchmarks.base import TaskOptions, make_task
from posttrainbench.evaluate.chat_templates import read_template, template_path
from posttrainbench.evaluate.launch import EvalOptions, run_evaluation
from posttrainbench.evaluate.run import classify, evaluate_model, read_metric
from posttrainbench.results.layout import EvalPaths


def _completions(log_file: str) -> list[str]:
    from inspect_ai.log import read_eval_log

    log = read_eval_log(log_file.removeprefix("file://"))
    return [s.output.completion for s in sorted(log.samples or [], key=lambda s: str(s.id))]


def test_evaluates_and_records_how(tiny_model_dir: Path, tmp_path: Path) -> None:
    m = evaluate_model(
        tiny_model_dir, "arith", tmp_path / "eval", limit=8, template_family="ptb-tiny"
    )
    assert m.n_samples == 8 and 0.0 <= m.score <= 1.0 and m.n_failed == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["score"] == m.score
    assert m.log_file and Path(m.log_file.removeprefix("file://")).exists()
    assert m.template_family == "ptb-tiny" and m.backend == "hf"
    assert m.max_tokens == 6 and m.decoding["temperature"] == 0.0
    assert m.sampling and m.sampling.greedy and m.sampling.used == ["temperature"]
    assert m.suite == "ptb-v1.2" and [s.seed for s in m.seeds] == [0]
    assert m.params["own_template"] == "present, ignored"  # the model carries one; it is not used


def test_own_template_is_ignored_and_generation_config_read_as_vllm_does(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A submitted tokenizer's own template changes nothing; its generation_config.json sets
    sampling only through the allow-list (everything else ignored and named)."""
    lever = tmp_path / "lever"
    shutil.copytree(tiny_model_dir, lever)
    cfg = json.loads((lever / "tokenizer_config.json").read_text())
    cfg["chat_template"] = "{% for m in messages %}ANSWER 42 {{ m['content'] }}{% endfor %}"
    (lever / "tokenizer_config.json").write_text(json.dumps(cfg))
    (lever / "chat_template.jinja").unlink(missing_ok=True)
    a = evaluate_model(tiny_model_dir, "arith", tmp_path / "a", limit=6, template_family="ptb-tiny")
    b = evaluate_model(lever, "arith", tmp_path / "b", limit=6, template_family="ptb-tiny")
    assert a.log_file and b.log_file
    assert _completions(a.log_file) == _completions(b.log_file)
    (lever / "generation_config.json").write_text(
        json.dumps({"do_sample": False, "temperature": 5.0, "top_k": 0, "max_length": 10**9})
    )
    hot = evaluate_model(lever, "arith", tmp_path / "c", limit=6, template_family="ptb-tiny")
    assert hot.sampling and hot.sampling.temperature == 5.0 and not hot.sampling.greedy
    assert hot.sampling.ignored == ["do_sample", "max_length"] and hot.max_tokens == 6
    assert hot.decoding["temperature"] == 5.0 and len(hot.seeds) == 1  # arith: one seed


def test_backends_apply_the_family_template(tmp_path: Path) -> None:
    req = ModelRequest(
        model_dir=tmp_path, template_file=template_path("qwen3"), stop_tokens=("<|im_end|>",)
    )
    hf = BACKENDS.get("hf").model(req)
    assert hf.name.startswith("ptb-hf/") and hf.args["chat_template"] == read_template("qwen3")
    assert hf.args["trust_remote_code"] is False and hf.args["use_safetensors"] is True
    vllm = BACKENDS.get("vllm").model(req.model_copy(update={"tools": True}))
    assert vllm.name == f"vllm/{tmp_path}"
    assert vllm.args["chat_template"] == str(template_path("qwen3"))
    assert vllm.args["generation_config"] == "vllm" and vllm.args["tool_call_parser"] == "hermes"
    running = BACKENDS.get("vllm").model(req.model_copy(update={"base_url": "http://h:1/v1"}))
    assert running.args == {} and running.base_url == "http://h:1/v1"
    assert running.extra_body == {}  # no tokenizer here to read the stop ids from


def test_unloadable_model_fails_loudly(tiny_model_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    (model / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(EvaluationError, match="SafetensorError") as err:
        evaluate_model(model, "arith", tmp_path / "eval", limit=4)
    assert err.value.kind == "fatal"


def test_failures_are_classified_for_the_ladder() -> None:
    assert classify(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")) == "pathology"
    assert classify(RuntimeError("httpx.ConnectError: [Errno 111] Connection refused")) == (
        "infrastructure"
    )
    assert classify(RuntimeError("index out of range in self")) == "pathology"


def _fake_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> list[int]:
    """Replace the evaluation subprocess by a script that sees --max-tokens; returns the lengths
    it was called with."""
    calls = tmp_path / "calls"
    child = tmp_path / "child.py"
    child.write_text(
        "import json, sys\n"
        "tokens = int(sys.argv[sys.argv.index('--max-tokens') + 1])\n"
        "out = sys.argv[sys.argv.index('--log-dir') + 1]\n"
        f"open({str(calls)!r}, 'a').write(f'{{tokens}}\\n')\n" + script
    )
    real = launch.command

    def fake(*args: object) -> list[str]:
        return [sys.executable, str(child), *real(*args)[4:]]  # type: ignore[arg-type]

    monkeypatch.setattr(launch, "command", fake)
    return []


METRICS = (
    "from pathlib import Path\n"
    "from posttrainbench.records import EvalMetrics\n"
    "from posttrainbench.results.store import write_json\n"
    "write_json(Path(out) / 'metrics.json', EvalMetrics(benchmark='gsm8k', split='test',"
    " score=0.5, n_samples=3, model_path='m', max_tokens=tokens))\n"
)


def _lengths(tmp_path: Path) -> list[int]:
    return [int(x) for x in (tmp_path / "calls").read_text().split()]


def test_ladder_steps_down_on_pathology(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_child(tmp_path, monkeypatch, f"if tokens > 2000: sys.exit(3)\n{METRICS}")
    m = run_evaluation(
        Path("m"), "gsm8k", "qwen3", EvalPaths(tmp_path / "e"), timeout_s=60, grace_s=1
    )
    assert _lengths(tmp_path) == [4000, 3000, 2000]  # one try per step: OOM is not retried
    assert m.ladder_step == 3 and m.max_tokens == 2000
    assert [(a.max_tokens, a.outcome) for a in m.attempts] == [
        (4000, "pathology"), (3000, "pathology"), (2000, "ok")
    ]  # fmt: skip


def test_ladder_retries_infrastructure_at_the_same_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = str(tmp_path / "calls")
    flaky = f"if len(open({calls!r}).read().split()) < 3: sys.exit(4)\n"
    _fake_child(tmp_path, monkeypatch, flaky + METRICS)
    m = run_evaluation(
        Path("m"), "gsm8k", "qwen3", EvalPaths(tmp_path / "e"), timeout_s=60, grace_s=1
    )
    assert _lengths(tmp_path) == [4000, 4000, 4000] and m.ladder_step == 1


def test_ladder_stops_on_bad_input_and_keeps_the_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_child(tmp_path, monkeypatch, "print('error: no data'); sys.exit(2)\n")
    with pytest.raises(EvaluationError, match=r"^evaluation refused its input: no data") as err:
        run_evaluation(
            Path("m"), "gsm8k", "qwen3", EvalPaths(tmp_path / "e"), timeout_s=60, grace_s=1
        )
    assert "evaluation evaluation" not in str(err.value) and "error: " not in str(err.value)
    assert _lengths(tmp_path) == [4000]
    assert json.loads((tmp_path / "e" / "attempts.json").read_text())["attempts"][0]["outcome"] == (
        "fatal"
    )


def test_fixed_max_tokens_replaces_the_ladder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_child(tmp_path, monkeypatch, "sys.exit(3)\n")
    with pytest.raises(EvaluationError, match="every ladder step failed"):
        run_evaluation(
            Path("m"), "gsm8k", "qwen3", EvalPaths(tmp_path / "e"), timeout_s=60, grace_s=1,
            options=EvalOptions(max_tokens=64),
        )  # fmt: skip
    assert _lengths(tmp_path) == [64]


def test_scorer_counts_known_right_and_wrong_answers(tmp_path: Path) -> None:
    """arith's scorer through inspect with scripted answers: 3 right, 1 wrong, 1 that only
    contains the right number after a wrong one."""
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    task = make_task(BENCHMARKS.get("arith").implementation(), TaskOptions(limit=5))
    targets = [str(sample.target) for sample in task.dataset]  # the order answers are asked in
    wrong = int(targets[4]) + 1  # items are drawn per key: a fixed number can be the answer
    answers = [targets[0], targets[1], f" {targets[2]}\nQ:", "-999",
               f"{wrong} {targets[4]}"]  # fmt: skip
    outputs = []
    for text in answers:
        out = ModelOutput.from_content(model="mockllm/model", content=text)
        out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        outputs.append(out)
    log = inspect_eval(
        task,
        model=get_model("mockllm/model", custom_outputs=outputs),
        log_dir=str(tmp_path),
        display="none",
        max_connections=1,
        max_samples=1,  # scripted outputs are handed out in request order: keep it the items' order
    )[0]
    assert log.results is not None
    assert read_metric(log.results.scores[0].metrics, "accuracy", "arith") == pytest.approx(0.6)
    with pytest.raises(EvaluationError, match="not 'pass_at_1'"):
        read_metric(log.results.scores[0].metrics, "pass_at_1", "arith")


@pytest.mark.parametrize(
    ("gpus", "seen"), [([3, 5], "3,5 PCI_BUS_ID"), ([], " PCI_BUS_ID"), (None, "inherited unset")]
)
def test_the_evaluation_sees_only_the_runs_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpus: list[int] | None, seen: str
) -> None:
    # Runs sharing a node each evaluate on their own GPUs, never on GPU 0 of the machine.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "inherited")
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    probe = (
        "import os\n"
        f"open({str(tmp_path / 'env')!r}, 'w').write(os.environ['CUDA_VISIBLE_DEVICES'] + ' '"
        " + os.environ.get('CUDA_DEVICE_ORDER', 'unset'))\n"
    )
    _fake_child(tmp_path, monkeypatch, probe + METRICS)
    run_evaluation(
        Path("m"), "gsm8k", "qwen3", EvalPaths(tmp_path / "e"), timeout_s=60, grace_s=1, gpus=gpus
    )
    assert (tmp_path / "env").read_text() == seen


def test_the_model_is_loaded_once_per_evaluation(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """inspect looks up the served model's name for its usage notices; a name its database
    lacks it resolves by building the provider again: a second copy of the model where the
    name's last part is a folder of the working directory (the agent's `final_model/` beside
    its `evaluate.py`), hub look-ups with retries where it is not (46 s measured here)."""
    from posttrainbench.evaluate import hf_backend

    built: list[str] = []
    real_init = hf_backend.HarnessHuggingFace.__init__

    def counted(self: Any, model_name: str, *args: Any, **kwargs: Any) -> None:
        built.append(model_name)
        real_init(self, model_name, *args, **kwargs)

    model = tmp_path / "final_model"  # a path no earlier test loaded (inspect memoizes)
    shutil.copytree(tiny_model_dir, model)
    monkeypatch.setattr(hf_backend.HarnessHuggingFace, "__init__", counted)
    monkeypatch.chdir(tmp_path)  # the folder's own name resolves from here
    evaluate_model(model, "arith", tmp_path / "eval", limit=2, template_family="ptb-tiny")
    assert built == ["final_model"]
