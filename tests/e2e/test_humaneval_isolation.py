"""HumanEval through the real `ptb eval`, a fake OpenAI-compatible server standing in for the
model: answers that exit early, return always-equal objects or patch builtins score 0, the
canonical solutions score all, a wrong body scores 0; and `ptb audit` flags the answers a log
scored by the old single-process rule passed."""

import asyncio
import os
import tempfile
import threading
from pathlib import Path

import pytest

from posttrainbench.evaluate import code_sandbox
from posttrainbench.evaluate.answer_check import candidate_code
from posttrainbench.records import EvalMetrics
from posttrainbench.sandbox.relay.fake import FakeUpstream, Reply, Seen, chat_json
from tests.conftest import PtbRunner
from tests.fixtures.code_data import humaneval_rows, write_humaneval

pytestmark = pytest.mark.needs("bwrap-namespaces")

KINDS = ("canonical", "exit_early", "always_equal", "patched_builtins", "wrong_body")


def answer(kind: str, row: dict[str, str]) -> str:
    entry = row["entry_point"]
    if kind == "canonical":
        return f"```python\n{row['prompt']}{row['canonical_solution']}```"
    if kind == "exit_early":
        return "```python\nimport sys\nsys.exit(0)\n```"
    if kind == "always_equal":
        return (
            "```python\nclass Eq:\n    def __eq__(self, other):\n        return True\n"
            "    def __ne__(self, other):\n        return False\n"
            f"def {entry}(*args):\n    return Eq()\n```"
        )
    if kind == "patched_builtins":
        return (
            "```python\nimport builtins, os, sys\nsys.excepthook = lambda *a: os._exit(0)\n"
            f"builtins.len = lambda x: 0\ndef {entry}(*args):\n    return None\n```"
        )
    return "    return None\n"


class Model:
    """Answers each HumanEval prompt with the next kind of answer, round robin."""

    def __init__(self) -> None:
        self.rows = humaneval_rows()
        self.kind_of: dict[str, str] = {}
        self.lock = threading.Lock()

    def __call__(self, seen: Seen) -> Reply:
        body = seen.json()
        text = str(body["messages"][-1]["content"])
        row = next(r for r in self.rows if r["prompt"].strip() in text)
        with self.lock:
            kind = self.kind_of.setdefault(row["task_id"], KINDS[len(self.kind_of) % len(KINDS)])
        return Reply(chunks=[chat_json(answer(kind, row), model=body["model"])])


def old_rule_passes(row: dict[str, str], completion: str) -> bool:
    """The single-process rule `ptb audit` is for: one program, exit status 0 is a pass."""
    entry = row["entry_point"]
    code = candidate_code(row["prompt"], completion, entry)
    program = f"{code}\n\n{row['test']}\n\ncheck({entry})\n"
    with tempfile.TemporaryDirectory() as name:
        if os.geteuid() == 0:
            os.chown(name, code_sandbox.CODE_UID, code_sandbox.CODE_UID)
        run = code_sandbox.run(["python", "-c", program], Path(name), timeout=30)
        return asyncio.run(run).success


def test_attack_humaneval_cheats_score_zero_through_ptb_eval_and_audit_flags_them(
    ptb: PtbRunner, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from inspect_ai.log import read_eval_log, write_eval_log

    hf = tmp_path / "hf"
    write_humaneval(hf)
    env = {"HF_HOME": str(hf), "HF_HUB_CACHE": str(hf / "hub")}
    model = Model()
    out = tmp_path / "eval"
    with FakeUpstream() as server:
        server.handler = model
        r = ptb("eval", str(tiny_model_dir), "--benchmark", "humaneval", "--limit", "10",
                "--template-family", "ptb-tiny", "--eval-backend", "vllm",
                "--eval-base-url", f"{server.url}/v1", "--out", str(out), env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "on humaneval: accuracy 0.2000 (10 items" in r.stdout  # the 2 canonical of 10
    metrics = EvalMetrics.model_validate_json((out / "metrics.json").read_text())
    assert metrics.params["code_isolation"] == "bwrap"
    [log_file] = list(out.glob("*.eval"))
    log = read_eval_log(str(log_file))
    rows = {row["task_id"]: row for row in model.rows}
    assert sorted(model.kind_of.values()) == sorted(KINDS * 2)
    for sample in log.samples or []:
        kind = model.kind_of[str(sample.id)]
        score = sample.scores["passes_tests"]  # type: ignore[index]
        assert (score.value == "C") is (kind == "canonical"), (kind, score.explanation)
        assert score.metadata and score.metadata["isolation"] == "bwrap"

    # The same answers scored by the old rule: early exits and the excepthook pass there.
    old_passed = set()
    for sample in log.samples or []:
        ok = old_rule_passes(rows[str(sample.id)], sample.output.completion)
        sample.scores["passes_tests"].value = "C" if ok else "I"  # type: ignore[index]
        if ok:
            old_passed.add(str(sample.id))
    cheats = {t for t, k in model.kind_of.items() if k in ("exit_early", "patched_builtins")}
    assert cheats <= old_passed
    old = tmp_path / "old" / "eval"
    old.mkdir(parents=True)
    write_eval_log(log, str(old / "old-rule.eval"))
    (tmp_path / "old" / "run.json").write_text("{}")  # a run directory: only its eval/ counts
    agents_own = tmp_path / "old" / "workspace" / "eval_logs"
    agents_own.mkdir(parents=True)
    write_eval_log(log, str(agents_own / "dev.eval"))

    r = ptb("audit", str(tmp_path / "old"))
    assert r.returncode == 1, r.stderr
    flagged = old_passed - {t for t, k in model.kind_of.items() if k == "canonical"}
    for task in flagged:
        assert task in r.stdout
    for task, kind in model.kind_of.items():
        if kind == "canonical":
            assert task not in r.stdout
    assert f"10 HumanEval samples re-checked: {len(flagged)} passed before and fail now" in r.stdout
    r = ptb("audit", str(out))  # the new log: nothing to flag
    assert r.returncode == 0, r.stderr
    assert "0 passed before and fail now" in r.stdout


def test_humaneval_without_bubblewrap_fails_in_one_line_naming_the_fix(
    ptb: PtbRunner, tiny_model_dir: Path, tmp_path: Path
) -> None:
    hf = tmp_path / "hf"
    write_humaneval(hf)
    broken = tmp_path / "bin"
    broken.mkdir()
    (broken / "bwrap").write_text("#!/bin/sh\nexit 1\n")
    (broken / "bwrap").chmod(0o755)
    env = {"HF_HOME": str(hf), "HF_HUB_CACHE": str(hf / "hub"),
           "PATH": f"{broken}:{os.environ['PATH']}"}  # fmt: skip
    env.pop(code_sandbox.OPT_IN_ENV, None)
    with FakeUpstream() as server:
        url = f"{server.url}/v1"
        r = ptb("eval", str(tiny_model_dir), "--benchmark", "humaneval", "--limit", "2",
                "--template-family", "ptb-tiny", "--eval-backend", "vllm",
                "--eval-base-url", url, "--out", str(tmp_path / "e"), env=env)  # fmt: skip
        assert not [s for s in server.seen if s.path.endswith("/chat/completions")]
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert (
        "bubblewrap cannot start here" in r.stderr and "PTB_CODE_SANDBOX=rlimits-only" in r.stderr
    )
