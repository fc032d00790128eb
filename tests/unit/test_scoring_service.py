"""The targets stay with the harness: every benchmark exports inputs only, and the scoring
service scores the agent's outputs with the real scorer, answering scores, never targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.evaluate.scoring_service import TOKEN_VAR, URL_VAR, ScoringService
from tests.fixtures.code_data import humaneval_rows, write_bfcl, write_humaneval
from tests.fixtures.hub import hf_home
from tests.fixtures.judged_data import write_arena, write_healthbench
from tests.fixtures.math_data import write_aime, write_gpqa, write_gsm8k

HUB_WRITERS: dict[str, Callable[[Path], Any]] = {
    "gsm8k": write_gsm8k,
    "aime2025": write_aime,
    "gpqamain": write_gpqa,
    "humaneval": write_humaneval,
    "bfcl": write_bfcl,
}
CACHE_WRITERS: dict[str, Callable[[Path], Any]] = {
    "arenahardwriting": write_arena,
    "healthbench": write_healthbench,
}


@pytest.mark.parametrize("bench", [*HUB_WRITERS, *CACHE_WRITERS])
def test_export_holds_inputs_only(bench: str, tmp_path: Path, cache_dir: Path) -> None:
    with hf_home(tmp_path / "hf"):
        if bench in HUB_WRITERS:
            HUB_WRITERS[bench](tmp_path / "hf")
        else:
            CACHE_WRITERS[bench](cache_dir)
        impl = BENCHMARKS.get(bench).implementation()
        samples = {str(s.id): s for s in impl.samples("test")}
        text = impl.export(tmp_path / "export").read_text()
    rows = [json.loads(line) for line in text.split("\n") if line.strip()]
    assert [r["id"] for r in rows] == list(samples)
    for row in rows:
        assert set(row) <= {"id", "input", "choices", "metadata"}, row.keys()
        assert set(row.get("metadata", {})) <= set(impl.input_fields)
        target = samples[str(row["id"])].target
        if isinstance(target, str) and len(target) > 3:  # short ones occur in any text
            assert target not in json.dumps(row, ensure_ascii=False)
    for secret in ("canonical_solution", "rubrics", "ideal_completion", "BASELINE ANSWER",
                   "ground_truth", "def check("):  # fmt: skip
        assert secret not in text


def _output(text: str) -> dict[str, Any]:
    return {
        "model": "agent",
        "choices": [{"message": {"role": "assistant", "content": text}, "stop_reason": "stop"}],
    }


@pytest.fixture
def gsm8k_service(tmp_path: Path) -> Iterator[tuple[ScoringService, httpx.Client]]:
    with hf_home(tmp_path / "hf"):
        write_gsm8k(tmp_path / "hf")
        service = ScoringService(
            benchmark="gsm8k",
            socket_path=tmp_path / "s.sock",
            token="tok",
            work_dir=tmp_path / "work",
            log_path=tmp_path / "evaluations.jsonl",
        )
        with (
            service,
            httpx.Client(transport=httpx.HTTPTransport(uds=str(service.socket_path))) as c,
        ):
            yield service, c


def _post(client: httpx.Client, body: dict[str, Any], token: str = "tok") -> httpx.Response:
    return client.post(
        "http://scoring/score", json=body, headers={"authorization": f"Bearer {token}"},
        timeout=300,
    )  # fmt: skip


def test_service_scores_with_the_real_scorer_and_never_answers_targets(
    gsm8k_service: tuple[ScoringService, httpx.Client], tmp_path: Path
) -> None:
    service, client = gsm8k_service
    assert _post(client, {"completions": []}, token="wrong").status_code == 401
    assert _post(client, {"completions": "nope"}).status_code == 400
    # the fixture's item i asks for 12 * (i + 1); item 2 is not answered at all
    body = {
        "split": "test",
        "limit": 3,
        "completions": [
            {"id": "gsm8k-test-0", "output": _output("6+6\nANSWER: 12")},
            {"id": "gsm8k-test-1", "output": _output("ANSWER: 5")},
            {"id": "gsm8k-test-3", "output": _output("ANSWER: 48")},  # beyond --limit 3
        ],
    }
    r = _post(client, body)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["score"] == pytest.approx(1 / 3) and reply["metric"] == "accuracy"
    assert reply["n_items"] == 3 and reply["n_answered"] == 2
    values = {i["id"]: (i["value"], i["answered"]) for i in reply["items"]}
    assert values == {
        "gsm8k-test-0": ("C", True),
        "gsm8k-test-1": ("I", True),
        "gsm8k-test-2": ("I", False),
    }
    assert "24" not in r.text and "36" not in r.text  # targets of the items it got wrong
    (ev,) = service.evaluations
    assert ev.split == "test" and ev.n_items == 3 and ev.score == pytest.approx(1 / 3)
    logged = [json.loads(x) for x in (tmp_path / "evaluations.jsonl").read_text().splitlines()]
    assert len(logged) == 1 and logged[0]["n_answered"] == 2


def test_service_states_the_runs_benchmark_and_suite(
    gsm8k_service: tuple[ScoringService, httpx.Client], tmp_path: Path
) -> None:
    """`GET /protocol`: what the agent's evaluate.py follows (the run's suite, not its own)."""
    _, client = gsm8k_service
    assert client.get("http://scoring/protocol").status_code == 401
    r = client.get("http://scoring/protocol", headers={"authorization": "Bearer tok"})
    assert r.status_code == 200 and r.json() == {"benchmark": "gsm8k", "suite": "ptb-v1.2"}
    assert (
        client.get("http://scoring/other", headers={"authorization": "Bearer tok"}).status_code
        == 405
    )

    from posttrainbench.records import RunSpec
    from posttrainbench.results.layout import RunPaths
    from posttrainbench.sandbox import services
    from posttrainbench.sandbox.host import HostSandbox

    spec = RunSpec(
        run_id="r", agent="noop", base_model="ptb-tiny", benchmark="gsm8k", budget_s=60,
        suite="ptb-v1.0",
    )  # fmt: skip
    with services.start(RunPaths(tmp_path / "run"), spec, HostSandbox()) as started:
        assert started.scoring is not None
        assert started.scoring.protocol("Bearer " + started.scoring.token)[1]["suite"] == "ptb-v1.0"


def test_a_failed_scoring_is_recorded_and_answered_without_detail(
    gsm8k_service: tuple[ScoringService, httpx.Client],
) -> None:
    service, client = gsm8k_service
    r = _post(client, {"split": "dev", "completions": []})  # gsm8k has no dev split
    assert r.status_code == 500 and "could not score" in r.json()["error"]
    (ev,) = service.evaluations
    assert ev.error and "dev" in ev.error and ev.score is None


def test_judged_scoring_stops_at_the_judge_budget(tmp_path: Path) -> None:
    service = ScoringService(
        benchmark="healthbench", socket_path=tmp_path / "s.sock", token="tok",
        work_dir=tmp_path / "w", log_path=tmp_path / "e.jsonl", judge_model="openai/gpt-5-mini",
        judge_budget_usd=0.5, judge_spent_usd=0.5,
    )  # fmt: skip
    status, reply = service.handle("Bearer tok", json.dumps({"completions": []}).encode())
    assert status == 403 and "judge budget spent" in reply["error"]
    assert service.evaluations[0].error == reply["error"]


def test_evaluate_py_without_the_service_says_why(tmp_path: Path, tiny_model_dir: Path) -> None:
    exported = tmp_path / "eval_data"
    exported.mkdir()
    n = BENCHMARKS.get("gsm8k").n_items or 0  # a full test set: its size is checked first
    rows = [json.dumps({"id": f"i{i}", "input": f"What is {i} + 1?"}) for i in range(n)]
    (exported / "test.jsonl").write_text("\n".join(rows) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in (URL_VAR, TOKEN_VAR)}
    env["PTB_EVAL_DATA_DIR"] = str(exported)
    done = subprocess.run(
        [sys.executable, "-m", "posttrainbench.evaluate.agent_eval", "--benchmark", "gsm8k",
         "--model-path", str(tiny_model_dir), "--template-family", "ptb-tiny", "--max-tokens",
         "4", "--log-dir", str(tmp_path / "logs")],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"no scoring service ({URL_VAR} is not set)" in done.stderr


def test_code_is_run_harness_side_by_the_real_checker(tmp_path: Path) -> None:
    """HumanEval: the tests are not exported; the service runs them on the agent's code."""
    rows = {r["task_id"]: r for r in humaneval_rows()[:2]}
    with hf_home(tmp_path / "hf"):
        write_humaneval(tmp_path / "hf")
        service = ScoringService(
            benchmark="humaneval", socket_path=tmp_path / "s.sock", token="tok",
            work_dir=tmp_path / "w", log_path=tmp_path / "e.jsonl",
        )  # fmt: skip
        right, wrong = rows
        body = {
            "limit": 2,
            "completions": [
                {"id": right, "output": _output(f"```python\n{rows[right]['prompt']}"
                                                f"{rows[right]['canonical_solution']}```")},
                {"id": wrong, "output": _output("```python\ndef nothing():\n    pass\n```")},
            ],
        }  # fmt: skip
        status, reply = service.handle("Bearer tok", json.dumps(body).encode())
    assert status == 200, (reply, service.evaluations)
    values = {i["id"]: i["value"] for i in reply["items"]}
    assert set(values) == set(rows), values  # the fixture's first two (no shuffle)
    assert values[right] == "C" and values[wrong] == "I", values


def test_run_record_keeps_each_evaluation_once_and_a_relaunch_inherits_the_spend(
    tmp_path: Path,
) -> None:
    from posttrainbench.records import AgentEvaluation, AgentOutcome, RunSpec, now
    from posttrainbench.results.layout import RunPaths
    from posttrainbench.sandbox import services
    from posttrainbench.sandbox.host import HostSandbox

    service = ScoringService(
        benchmark="healthbench", socket_path=tmp_path / "s.sock", token="t",
        work_dir=tmp_path / "w", log_path=tmp_path / "e.jsonl",
    )  # fmt: skip
    service.evaluations = [AgentEvaluation(at=now(), split="test", n_items=2, judge_cost_usd=0.3)]
    outcome = AgentOutcome(started_at=now(), deadline=now())
    svc = services.Services(scoring=service)
    paths = RunPaths(tmp_path / "run")
    services.record(svc, paths, outcome)
    services.record(svc, paths, outcome)
    assert [e.judge_cost_usd for e in outcome.evaluations] == [0.3]
    spec = RunSpec(
        run_id="r", agent="noop", base_model="ptb-tiny", benchmark="healthbench", budget_s=60,
        judge_model="openai/gpt-5-mini", agent_judge_budget_usd=0.5,
    )  # fmt: skip
    with services.start(paths, spec, HostSandbox(), outcome) as relaunch:
        assert relaunch.scoring is not None and relaunch.scoring.judge_spent_usd == 0.3
        assert {URL_VAR, TOKEN_VAR} <= set(relaunch.env)
        assert [b.name for b in relaunch.bridges] == ["scoring"]
