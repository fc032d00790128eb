"""The agent's check_data.py: the scoring service answers the decontamination check's verdict
on one file (item ids, lines, coverage), never an item's text, from a separate process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.evaluate.data_check import CHECK_PATH, NAME_HEADER, DataCheckReply, safe_name
from posttrainbench.evaluate.scoring_service import TOKEN_VAR, URL_VAR, ScoringService
from posttrainbench.workspace import builder
from tests.fixtures.hub import hf_home
from tests.fixtures.math_data import gsm8k_rows, write_gsm8k


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[ScoringService, httpx.Client]]:
    with hf_home(tmp_path / "hf"):
        write_gsm8k(tmp_path / "hf")
        svc = ScoringService(
            benchmark="gsm8k",
            socket_path=tmp_path / "s.sock",
            token="tok",
            work_dir=tmp_path / "work",
            log_path=tmp_path / "agent" / "evaluations.jsonl",
            base_model="ptb-tiny",
        )
        (tmp_path / "agent").mkdir()
        with (
            svc,
            httpx.Client(transport=httpx.HTTPTransport(uds=str(svc.socket_path))) as c,
        ):
            yield svc, c


def _check(client: httpx.Client, body: bytes, name: str, token: str = "tok") -> httpx.Response:
    headers = {"authorization": f"Bearer {token}", NAME_HEADER: name}
    return client.post(f"http://scoring{CHECK_PATH}", content=body, headers=headers, timeout=300)


def test_a_file_holding_a_test_item_is_named_by_id_and_line_never_by_text(
    service: tuple[ScoringService, httpx.Client], tmp_path: Path
) -> None:
    _, client = service
    assert _check(client, b"x\n", "a.txt", token="wrong").status_code == 401
    item = gsm8k_rows(8)[5]
    lines = [
        json.dumps({"text": "The committee met on Tuesday to discuss the new library hours."}),
        json.dumps({"question": item["question"], "answer": item["answer"]}),
    ]
    r = _check(client, ("\n".join(lines) + "\n").encode(), "../../train.jsonl")
    assert r.status_code == 200, r.text
    reply = DataCheckReply.model_validate_json(r.content)
    assert reply.verdict == "contaminated" and reply.name == "train.jsonl"
    assert "gsm8k-test-5" in {m.item for m in reply.matches}
    assert {m.line for m in reply.matches} == {2} and reply.lines_matched == 1
    assert "apples" not in r.text  # neither the item's text nor the agent's line comes back
    logged = [
        json.loads(x) for x in (tmp_path / "agent" / "data_checks.jsonl").read_text().splitlines()
    ]
    assert logged[0]["verdict"] == "contaminated" and len(logged[0]["sha256"]) == 64
    assert not list((tmp_path / "work").rglob("train.jsonl"))  # the upload is not kept

    clean = _check(client, lines[0].encode() + b"\n", "clean.jsonl")
    assert clean.status_code == 200, clean.text
    assert DataCheckReply.model_validate_json(clean.content).verdict == "clean"


def test_check_data_py_in_the_workspace_prints_the_verdict(
    service: tuple[ScoringService, httpx.Client], tmp_path: Path
) -> None:
    """The workspace's check_data.py, run as the agent runs it, through a TCP port bridged to
    the service's socket (as the sandbox's bridge does)."""
    svc, _ = service
    ws = tmp_path / "ws"
    builder.write_evaluator(ws, MODELS.get("ptb-tiny"), BENCHMARKS.get("gsm8k"))
    assert builder.CHECK_DATA in builder.EVALUATOR_PATHS and (ws / builder.CHECK_DATA).is_file()
    item = gsm8k_rows(3)[2]
    (ws / "mine.jsonl").write_text(json.dumps(item) + "\n")
    socat = subprocess.Popen(
        ["socat", "TCP-LISTEN:0,bind=127.0.0.1,fork", f"UNIX-CONNECT:{svc.socket_path}"],
        stderr=subprocess.PIPE,
    )
    try:
        port = _listening_port(socat.pid)
        env = {URL_VAR: f"http://127.0.0.1:{port}", TOKEN_VAR: "tok", "PATH": "/usr/bin:/bin"}
        done = subprocess.run(
            [sys.executable, "check_data.py", "mine.jsonl"],
            cwd=ws, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        socat.kill()
        socat.wait()
    assert done.returncode == 1, done.stderr
    assert done.stdout.startswith("mine.jsonl: contaminated")
    assert "line 1: test item gsm8k-test-2" in done.stdout
    assert "apples" not in done.stdout


def _listening_port(pid: int) -> int:
    """The port a process listens on (socat picked one: port 0), polled until it is up."""
    import psutil

    from tests.waiting import wait_until

    found: list[int] = []

    def listening() -> bool:
        for conn in psutil.Process(pid).net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                found.append(int(conn.laddr.port))
        return bool(found)

    wait_until(listening, "socat listening", timeout=30)
    return found[0]


def test_safe_name_keeps_a_plain_base_name() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("a b/c;d.parquet") == "c_d.parquet"
    assert safe_name("..") == "data" and safe_name(".hidden.jsonl") == "hidden.jsonl"
