"""Model-written code in the `ptb` sandbox: code that tries to escape (write outside, read
secrets, reach the network, fork-bomb, spin, eat memory) fails to, leaving the host as it was.
HumanEval's answers on top of it: tests/unit/test_answer_check.py."""

import ast
import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from posttrainbench.evaluate import code_sandbox
from tests.waiting import wait_until

pytestmark = pytest.mark.needs("bwrap-namespaces")


def run(code: str, tmp_path: Path, timeout: float = 20) -> code_sandbox.ExecResult[str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.chown(work, code_sandbox.CODE_UID, code_sandbox.CODE_UID)
    return asyncio.run(code_sandbox.run(["python", "-c", code], work, timeout=timeout))


def test_writes_outside_the_sample_directory_do_not_land(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    r = run(f"open({str(target)!r}, 'w').write('x')", tmp_path)
    assert not r.success and not target.exists()
    r = run("open('/usr/escaped.txt', 'w').write('x')", tmp_path)
    assert not r.success and not Path("/usr/escaped.txt").exists()
    assert run("open('inside.txt', 'w').write('ok')", tmp_path).success  # its own dir works


def test_secrets_of_the_grader_are_not_visible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = Path.home() / ".ptb-test-key"
    secret.write_text("sk-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    try:
        r = run(
            "import os\n"
            "try:\n"
            f"    seen = open({str(secret)!r}).read()\n"
            "except OSError as exc:\n"
            "    seen = type(exc).__name__\n"
            "print(os.environ.get('OPENAI_API_KEY'), seen)",
            tmp_path,
        )
        assert r.success, r.stderr
        assert "sk-" not in r.stdout and r.stdout.startswith("None ")
    finally:
        secret.unlink()


def test_no_network(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        r = run(
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)", tmp_path
        )
        assert not r.success and ("refused" in r.stderr or "unreachable" in r.stderr)
    finally:
        server.close()


def test_fork_bomb_is_bounded_and_cleaned_up(tmp_path: Path) -> None:
    before = len(os.listdir("/proc"))
    started = time.monotonic()
    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    with pytest.raises(TimeoutError):
        run(bomb, tmp_path, timeout=5)
    assert time.monotonic() - started < 15
    wait_until(lambda: len(os.listdir("/proc")) < before + 20, "the whole sandbox is gone", 10)


def test_infinite_loop_times_out(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run("while True: pass", tmp_path, timeout=2)
    assert time.monotonic() - started < 8


def test_memory_is_capped(tmp_path: Path) -> None:
    r = run("x = bytearray(8 << 30)", tmp_path)
    assert not r.success and "MemoryError" in r.stderr


def test_the_opt_in_path_runs_with_a_scrubbed_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("PTB_CACHE", "/secret/cache")
    work = tmp_path / "work"
    work.mkdir()
    code = "import os; print(sorted(os.environ))"
    r = asyncio.run(code_sandbox.run(["python", "-c", code], work, timeout=20, mode="rlimits-only"))
    assert r.success, r.stderr
    assert set(ast.literal_eval(r.stdout)) <= {
        "PATH",
        "HOME",
        "LC_CTYPE",
    }  # nothing of the grader's
