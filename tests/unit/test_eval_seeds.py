"""Evaluation seeds as the suite says, on the embedded model (CPU) and the GPQA/GSM8K fixtures:
a greedy model once where the seed only drives sampling, a sampling one five times, GPQA five
times with the choices reordered per seed, ptb-v1.0 once; each seed in metrics.json."""

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from posttrainbench.errors import EvaluationError
from posttrainbench.evaluate import run
from posttrainbench.evaluate.run import evaluate_model, evaluation_seeds
from posttrainbench.records import EvalMetrics
from tests.fixtures.hub import hf_home
from tests.fixtures.math_data import write_gpqa, write_gsm8k


def _sampling_copy(tiny_model_dir: Path, dest: Path) -> Path:
    shutil.copytree(tiny_model_dir, dest)
    gen = json.loads((dest / "generation_config.json").read_text())
    gen.update(temperature=0.7, top_p=0.9, max_new_tokens=10**9, num_beams=4)
    (dest / "generation_config.json").write_text(json.dumps(gen))
    return dest


def _inputs(log_file: str) -> list[str]:
    from inspect_ai.log import read_eval_log

    log = read_eval_log(log_file.removeprefix("file://"))
    return [str(s.input) for s in sorted(log.samples or [], key=lambda s: str(s.id))]


def _eval(model: Path, benchmark: str, out: Path, suite: str, **kw: Any) -> EvalMetrics:
    return evaluate_model(
        model, benchmark, out, limit=3, template_family="ptb-tiny", max_tokens=8, suite=suite, **kw
    )


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from posttrainbench.evaluate.benchmarks import base

    # the fixtures hold a few items, not the declared full test sets (their count check is
    # tested with the benchmarks)
    monkeypatch.setattr(base, "check_count", lambda *a: None)
    with hf_home(tmp_path / "hf"):
        write_gsm8k(tmp_path / "hf")
        write_gpqa(tmp_path / "hf")
        yield tmp_path


def test_greedy_once_sampling_five_times_and_gpqa_five_with_shuffled_choices(
    tiny_model_dir: Path, data: Path
) -> None:
    sampler = _sampling_copy(tiny_model_dir, data / "sampler")
    greedy = _eval(tiny_model_dir, "gsm8k", data / "g", "ptb-v1.2")
    assert greedy.sampling and greedy.sampling.greedy and greedy.sampling.source != "none"
    assert [s.seed for s in greedy.seeds] == [0] and greedy.score == greedy.seeds[0].score

    hot = _eval(sampler, "gsm8k", data / "s", "ptb-v1.2", seed=3)
    assert hot.sampling and not hot.sampling.greedy and hot.decoding["temperature"] == 0.7
    assert hot.sampling.used == ["temperature", "top_p"]
    assert {"max_new_tokens", "num_beams"} <= set(hot.sampling.ignored)
    assert hot.max_tokens == 8  # the agent's max_new_tokens never applies
    assert [s.seed for s in hot.seeds] == evaluation_seeds(3, 5) and hot.seeds[0].seed == 3
    assert all(s.score is not None and s.n_samples == 3 and s.log_file for s in hot.seeds)
    assert hot.score == pytest.approx(sum(s.score or 0 for s in hot.seeds) / 5)
    assert len({s.log_file for s in hot.seeds}) == 5
    assert hot.params["seeds_run"] == "in turn"  # hf: the process's generator, seed by seed

    for model, out in ((tiny_model_dir, "gq"), (sampler, "sq")):
        gpqa = _eval(model, "gpqamain", data / out, "ptb-v1.2")
        assert len(gpqa.seeds) == 5 and all(s.score is not None for s in gpqa.seeds)
        orders = {tuple(_inputs(s.log_file or "")) for s in gpqa.seeds}
        assert len(orders) > 1  # the seed also orders the choices
        stored = EvalMetrics.model_validate_json((data / out / "metrics.json").read_text())
        assert stored.seeds == gpqa.seeds and stored.suite == "ptb-v1.2"

    old = _eval(sampler, "gpqamain", data / "v10", "ptb-v1.0")
    assert [s.seed for s in old.seeds] == [0] and old.suite == "ptb-v1.0"
    fixed = _eval(tiny_model_dir, "gpqamain", data / "v10g", "ptb-v1.0")
    assert _inputs(fixed.log_file or "") == _inputs(fixed.seeds[0].log_file or "")


def test_a_failed_later_seed_is_recorded_and_left_out(
    tiny_model_dir: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sampler = _sampling_copy(tiny_model_dir, data / "sampler")
    real = run.run_task
    calls: list[int] = []

    def flaky(task: Any, req: Any, backend: str, log_dir: Path) -> Any:
        calls.append(req.seed)
        if len(calls) == 2:
            raise EvaluationError("CUDA out of memory on this seed", kind="pathology")
        return real(task, req, backend, log_dir)

    monkeypatch.setattr(run, "run_task", flaky)
    m = _eval(sampler, "gsm8k", data / "e", "ptb-v1.2", seeds=3)
    assert [s.seed for s in m.seeds] == evaluation_seeds(0, 3)
    failed = m.seeds[1]
    assert failed.score is None and failed.error and "out of memory" in failed.error
    scored = [s.score for s in m.seeds if s.score is not None]
    assert len(scored) == 2 and m.score == pytest.approx(sum(scored) / 2)

    calls.clear()
    monkeypatch.setattr(run, "run_task", lambda *a: (_ for _ in ()).throw(
        EvaluationError("CUDA out of memory", kind="pathology")
    ))  # fmt: skip
    with pytest.raises(EvaluationError) as err:  # the first seed fails: the ladder's business
        _eval(sampler, "gsm8k", data / "f", "ptb-v1.2")
    assert err.value.kind == "pathology" and not (data / "f" / "metrics.json").exists()


def test_agent_choice_order_matches_the_harness_order_for_every_seed(data: Path) -> None:
    """The agent generates on exported inputs (no target) reordered by the seed; the scoring
    service reorders its full samples by the same seed: same choices, and its target letter
    points at the correct answer."""
    from posttrainbench.catalog import BENCHMARKS
    from posttrainbench.evaluate.benchmarks.gpqamain import reshuffled

    impl = BENCHMARKS.get("gpqamain").implementation()
    full = impl.samples("test")[:3]
    exported = [json.loads(x) for x in impl.export(data / "x").read_text().splitlines()[:3]]
    from inspect_ai.dataset import Sample

    for seed in evaluation_seeds(0, 5):
        for whole, row in zip(full, exported, strict=True):
            mine, theirs = reshuffled(whole, seed), reshuffled(Sample(**row), seed)
            assert mine.choices == theirs.choices and mine.input == theirs.input
            assert not theirs.target
            correct = (whole.choices or [])["ABCD".index(str(whole.target))]
            assert (mine.choices or [])["ABCD".index(str(mine.target))] == correct
    assert reshuffled(full[0], 0).choices == full[0].choices  # seed 0: the fixed order


def _agent_service(
    data: Path, monkeypatch: pytest.MonkeyPatch, benchmark: str, suite: str, name: str
) -> list[int | None]:
    """A scoring service of a run of `suite` that the agent's evaluate.py talks to (its
    handlers called directly); the choice seeds posted to it, in order."""
    from posttrainbench.catalog import BENCHMARKS
    from posttrainbench.evaluate import agent_eval
    from posttrainbench.evaluate.scoring_service import (
        ScoringProtocol,
        ScoringReply,
        ScoringService,
    )

    BENCHMARKS.get(benchmark).implementation().export(data / f"eval_data_{benchmark}")
    monkeypatch.setenv("PTB_EVAL_DATA_DIR", str(data / f"eval_data_{benchmark}"))
    service = ScoringService(
        benchmark=benchmark, socket_path=data / f"{name}.sock", token="t",
        work_dir=data / f"w-{name}", log_path=data / f"{name}.jsonl", suite=suite,
    )  # fmt: skip
    posted: list[int | None] = []

    def post(body: dict[str, Any]) -> ScoringReply:
        posted.append(body["choice_seed"])
        status, reply = service.handle("Bearer t", json.dumps(body).encode())
        assert status == 200, reply
        return ScoringReply.model_validate(reply)

    def protocol() -> ScoringProtocol:
        status, reply = service.protocol("Bearer t")
        assert status == 200, reply
        return ScoringProtocol.model_validate(reply)

    monkeypatch.setattr(agent_eval, "post", post)
    monkeypatch.setattr(agent_eval, "protocol", protocol)
    return posted


def _agent_args(model: Path, benchmark: str) -> list[str]:
    return ["--benchmark", benchmark, "--model-path", str(model), "--template-family",
            "ptb-tiny", "--max-tokens", "4", "--limit", "2"]  # fmt: skip


def test_agent_evaluate_py_follows_the_same_rule(
    tiny_model_dir: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """evaluate.py on the exported GPQA inputs: five seeds (ptb-v1.2), each posted to the
    scoring service with the seed that ordered its choices, each kept in metrics.json;
    `--seeds 1` for a quick look; a ptb-v1.0 run one seed, in the fixed order."""
    from posttrainbench.evaluate import agent_eval

    posted = _agent_service(data, monkeypatch, "gpqamain", "ptb-v1.2", "v12")
    base = _agent_args(tiny_model_dir, "gpqamain")
    assert agent_eval.main([*base, "--log-dir", str(data / "a")]) == 0
    m = EvalMetrics.model_validate_json((data / "a" / "metrics.json").read_text())
    assert posted == evaluation_seeds(0, 5) == [s.seed for s in m.seeds]
    assert m.suite == "ptb-v1.2" and all(s.n_samples == 2 for s in m.seeds)
    assert m.score == pytest.approx(sum(s.score or 0 for s in m.seeds) / 5)
    posted.clear()
    assert agent_eval.main([*base, "--log-dir", str(data / "b"), "--seeds", "1"]) == 0
    assert posted == [0]
    posted = _agent_service(data, monkeypatch, "gpqamain", "ptb-v1.0", "v10")
    assert agent_eval.main([*base, "--log-dir", str(data / "c")]) == 0
    assert posted == [None]  # v1.0 keeps the fixed choice order


def test_agent_evaluate_py_takes_the_runs_suite_from_the_harness(
    tiny_model_dir: Path, data: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    """A sampling model on GSM8K: the workspace's evaluate.py (as the workspace builder writes
    it, no suite in it) evaluates once for a ptb-v1.0 run and five times for a ptb-v1.2 run,
    the suite the harness's service states; a `--suite` naming another one is refused."""
    from posttrainbench.catalog import BENCHMARKS, MODELS
    from posttrainbench.evaluate import agent_eval
    from posttrainbench.workspace.builder import write_evaluator

    sampler = _sampling_copy(tiny_model_dir, data / "sampler")
    write_evaluator(data / "ws", MODELS.get("ptb-tiny"), BENCHMARKS.get("gsm8k"))
    assert "suite" not in (data / "ws" / "evaluate.py").read_text()
    base = _agent_args(sampler, "gsm8k")
    for suite, n in (("ptb-v1.0", 1), ("ptb-v1.2", 5)):
        posted = _agent_service(data, monkeypatch, "gsm8k", suite, suite)
        out = data / f"log-{suite}"
        assert agent_eval.main([*base, "--log-dir", str(out)]) == 0
        m = EvalMetrics.model_validate_json((out / "metrics.json").read_text())
        assert m.suite == suite and m.sampling and not m.sampling.greedy
        assert [s.seed for s in m.seeds] == evaluation_seeds(0, n) and len(posted) == n

    posted = _agent_service(data, monkeypatch, "gsm8k", "ptb-v1.0", "refuse")
    rc = agent_eval.main([*base, "--log-dir", str(data / "x"), "--suite", "ptb-v1.2"])
    assert rc == 2 and posted == [] and not (data / "x" / "metrics.json").exists()
    err = capsys.readouterr().err
    assert "this run follows suite ptb-v1.0, not ptb-v1.2" in err
    rc = agent_eval.main([*_agent_args(sampler, "gpqamain"), "--log-dir", str(data / "y")])
    assert rc == 2 and posted == [] and "this run's benchmark is gsm8k" in capsys.readouterr().err


def test_the_harness_passes_the_runs_suite_to_the_evaluation(tmp_path: Path) -> None:
    from posttrainbench.evaluate.launch import EvalOptions, command
    from posttrainbench.records import RunSpec
    from posttrainbench.runner import eval_options

    spec = RunSpec(
        run_id="r", agent="noop", base_model="ptb-tiny", benchmark="arith", budget_s=60,
        suite="ptb-v1.0",
    )  # fmt: skip
    opts = eval_options(spec)
    assert opts.suite == "ptb-v1.0"
    cmd = command(tmp_path, "gpqamain", None, tmp_path, opts, 100)
    assert cmd[cmd.index("--suite") + 1] == "ptb-v1.0"
    assert "--suite" not in command(tmp_path, "gpqamain", None, tmp_path, EvalOptions(), 100)
