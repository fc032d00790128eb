"""Model-written code in the `ptb` sandbox: the real HumanEval solutions pass, and code that
tries to escape (write outside, read secrets, reach the network, fork-bomb, spin, eat memory)
fails to, leaving the host as it was."""

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from posttrainbench.evaluate import code_sandbox
from posttrainbench.evaluate.benchmarks.humaneval import program
from tests.fixtures.code_data import humaneval_rows

pytestmark = pytest.mark.skipif(
    code_sandbox.isolation() != "bwrap", reason="needs bubblewrap (apt-get install bubblewrap)"
)


def run(code: str, tmp_path: Path, timeout: float = 20) -> code_sandbox.ExecResult[str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        os.chown(work, code_sandbox.CODE_UID, code_sandbox.CODE_UID)
    return asyncio.run(code_sandbox.run(["python", "-c", code], work, timeout=timeout))


def test_every_real_canonical_solution_passes_and_wrong_ones_fail(tmp_path: Path) -> None:
    rows = humaneval_rows()
    assert len(rows) == 164

    async def all_of(solutions: list[str], tag: str) -> list[bool]:
        gate = asyncio.Semaphore(4)

        async def one(i: int, row: dict[str, str], solution: str) -> bool:
            work = tmp_path / f"{tag}{i}"
            work.mkdir()
            if os.geteuid() == 0:
                os.chown(work, code_sandbox.CODE_UID, code_sandbox.CODE_UID)
            code = program(row["prompt"], solution, row["test"], row["entry_point"])
            async with gate:
                return (await code_sandbox.run(["python", "-c", code], work, timeout=30)).success

        return await asyncio.gather(
            *(one(i, r, s) for i, (r, s) in enumerate(zip(rows, solutions, strict=True)))
        )

    started = time.monotonic()
    passed = asyncio.run(all_of([r["canonical_solution"] for r in rows], "good"))
    assert all(passed), [r["task_id"] for r, ok in zip(rows, passed, strict=True) if not ok]
    print(f"164 canonical solutions in {time.monotonic() - started:.1f} s")
    wrong = asyncio.run(all_of(["    return None\n"] * 164, "bad"))
    assert sum(wrong) <= 2  # a None can satisfy a test only by accident


def test_a_full_function_completion_replaces_the_stub(tmp_path: Path) -> None:
    row = humaneval_rows()[0]
    full = f"```python\n{row['prompt']}{row['canonical_solution']}```"
    assert run(program(row["prompt"], full, row["test"], row["entry_point"]), tmp_path).success


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
    time.sleep(1)
    assert len(os.listdir("/proc")) < before + 20  # the whole sandbox is gone


def test_infinite_loop_times_out(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run("while True: pass", tmp_path, timeout=2)
    assert time.monotonic() - started < 8


def test_memory_is_capped(tmp_path: Path) -> None:
    r = run("x = bytearray(8 << 30)", tmp_path)
    assert not r.success and "MemoryError" in r.stderr
