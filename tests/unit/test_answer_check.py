"""HumanEval answers checked in isolation (evaluate/answer_check.py): the real canonical
solutions pass, wrong ones fail, and every way of fooling the old single-process rule (exit
early, always-equal objects, patched builtins, writing the checker's files) scores wrong. A
sandbox that cannot start is the harness's failure (retried once, then an error), never a
wrong answer; without bubblewrap nothing runs unless the user opts in."""

import asyncio
import os
import stat
import tempfile
import time
from pathlib import Path

import pytest

from posttrainbench.errors import EvaluationError
from posttrainbench.evaluate import code_sandbox
from posttrainbench.evaluate.answer_check import (
    AnswerVerdict,
    candidate_code,
    check_answer,
    find_code,
)
from tests.fixtures.code_data import humaneval_rows

PROMPT = 'def add_one(x):\n    """Return x + 1."""\n'
TEST = "def check(candidate):\n    assert candidate(1) == 2\n    assert candidate(-5) == -4\n"
RIGHT = "    return x + 1\n"
BYE = "class Bye(int):\n    def __del__(self):\n        import os; os._exit(0)\n"


def check(completion: str, prompt: str = PROMPT, test: str = TEST, **kw: float) -> AnswerVerdict:
    return asyncio.run(check_answer(prompt, completion, test, "add_one", **kw))


def old_rule_passes(completion: str, prompt: str = PROMPT, test: str = TEST) -> bool:
    """The single-process rule this replaces: everything in one program, exit 0 is a pass."""
    program = f"{candidate_code(prompt, completion, 'add_one')}\n\n{test}\n\ncheck(add_one)\n"
    with tempfile.TemporaryDirectory() as name:
        if os.geteuid() == 0:
            os.chown(name, code_sandbox.CODE_UID, code_sandbox.CODE_UID)
        run = code_sandbox.run(["python", "-c", program], Path(name), timeout=20)
        return asyncio.run(run).success


def full(body: str) -> str:
    """A completion that is a whole program defining a wrong add_one after `body`."""
    return f"```python\n{body}\ndef add_one(x):\n    return 0\n```"


def test_a_right_answer_passes_and_a_wrong_body_fails() -> None:
    ok = check(RIGHT)
    assert ok.passed and ok.calls == 2 and ok.isolation == "bwrap" and ok.attempts == 1
    bad = check("    return x\n")
    assert not bad.passed and bad.reason == "tests failed" and "AssertionError" in str(bad.detail)


def test_every_real_canonical_solution_passes_and_wrong_ones_fail() -> None:
    rows = humaneval_rows()
    assert len(rows) == 164

    async def all_of(solutions: list[str]) -> list[AnswerVerdict]:
        gate = asyncio.Semaphore(4)

        async def one(row: dict[str, str], solution: str) -> AnswerVerdict:
            async with gate:
                return await check_answer(row["prompt"], solution, row["test"], row["entry_point"])

        return await asyncio.gather(*(one(r, s) for r, s in zip(rows, solutions, strict=True)))

    started = time.monotonic()
    verdicts = asyncio.run(all_of([r["canonical_solution"] for r in rows]))
    failed = [(r["task_id"], v.reason) for r, v in zip(rows, verdicts, strict=True) if not v.passed]
    assert not failed
    print(f"164 canonical solutions, {sum(v.calls for v in verdicts)} isolated calls, "
          f"in {time.monotonic() - started:.1f} s")  # fmt: skip
    wrong = asyncio.run(all_of(["    return None\n"] * 164))
    assert sum(v.passed for v in wrong) <= 2  # a None can satisfy a test only by accident


def test_a_full_function_completion_replaces_the_stub() -> None:
    row = humaneval_rows()[0]
    completion = f"```python\n{row['prompt']}{row['canonical_solution']}```"
    v = asyncio.run(check_answer(row["prompt"], completion, row["test"], row["entry_point"]))
    assert v.passed, v


def test_subclasses_of_builtin_values_count_as_their_builtin() -> None:
    """A Counter, OrderedDict or namedtuple compares equal to the dict or tuple a test expects,
    as it did in one process; a dict subclass cannot smuggle an always-true __eq__ across."""
    test = "def check(candidate):\n    assert candidate(2) == ({'a': 2}, (2, 3), [2])\n"
    counter = (
        "```python\nimport collections\nP = collections.namedtuple('P', 'x y')\n"
        "def add_one(x):\n    return (collections.Counter({'a': x}), P(x, x + 1), "
        "collections.UserList([x]).data)\n```"
    )
    assert check(counter, test=test).passed
    eq = (
        "```python\nclass D(dict):\n    def __eq__(self, other):\n        return True\n"
        "def add_one(x):\n    return D(b=1)\n```"
    )
    assert old_rule_passes(eq)  # the hole this closes
    assert not check(eq).passed


def test_exceptions_of_the_candidate_are_raised_in_the_checker() -> None:
    test = (
        "def check(candidate):\n"
        "    try:\n        candidate(-1)\n    except ValueError as exc:\n"
        "        assert 'negative' in str(exc)\n    else:\n        assert False\n"
        "    assert candidate(1) == 2\n"
    )
    raising = "    if x < 0:\n        raise ValueError('negative')\n    return x + 1\n"
    assert check(raising, test=test).passed
    assert not check(RIGHT, test=test).passed  # not raising where the test wants it fails


@pytest.mark.parametrize(
    ("cheat", "fooled_old_rule"),
    [
        ("import sys\nsys.exit(0)", True),
        ("exit(0)", True),
        ("import os\nos._exit(0)", True),
        ("raise SystemExit(0)", True),
        (BYE + "def add_one(x):\n    return Bye(0)\n", True),
        ("import atexit, os\natexit.register(lambda: os._exit(0))", True),
        # SystemExit in __del__ is only printed by Python, but must not help either
        ("class Bye:\n    def __del__(self):\n        raise SystemExit(0)\nkeep = Bye()", False),
    ],
)
def test_attack_humaneval_early_exit_scores_wrong(cheat: str, fooled_old_rule: bool) -> None:
    completion = f"```python\n{cheat}```" if "def add_one" in cheat else full(cheat)
    assert old_rule_passes(completion) is fooled_old_rule  # the hole this closes
    v = check(completion)
    assert not v.passed, v


def test_attack_humaneval_exit_inside_the_function_scores_wrong() -> None:
    for body in ("    import sys; sys.exit(0)\n", "    import os; os._exit(0)\n",
                 "    raise SystemExit(0)\n", "    raise KeyboardInterrupt\n"):  # fmt: skip
        v = check(body)
        assert not v.passed and "without one answer" in v.reason, (body, v)


def test_attack_humaneval_always_equal_object_scores_wrong() -> None:
    eq = "class Eq:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
    always = f"```python\n{eq}def add_one(x):\n    return Eq()\n```"
    assert old_rule_passes(always)  # the hole this closes
    v = check(always)
    assert not v.passed and "not a plain value" in v.reason
    # An object whose repr pretends to be the value is just that value: right only if right.
    fake = "class Eq(int):\n    def __eq__(self, other):\n        return True\n    def __repr__(self):\n        return '7'\n"  # noqa: E501
    assert not check(f"```python\n{fake}def add_one(x):\n    return Eq(0)\n```").passed
    row = humaneval_rows()[0]
    v = asyncio.run(
        check_answer(row["prompt"], f"    return Eq()\n{eq}", row["test"], row["entry_point"])
    )
    assert not v.passed


def test_attack_humaneval_patched_builtins_score_wrong() -> None:
    hook = full("import sys, os\nsys.excepthook = lambda *a: os._exit(0)")
    assert old_rule_passes(hook)  # the hole this closes
    for cheat in (
        "import builtins\nbuiltins.AssertionError = type('AssertionError', (Exception,), {})",
        "import sys, os\nsys.excepthook = lambda *a: os._exit(0)",
        "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.len = lambda x: 0",
        "import builtins\n_real = builtins.__build_class__\nbuiltins.__build_class__ = _real",
        "import sys\nsys.modules['builtins'].__dict__['tuple'] = lambda *a: ()",
    ):
        v = check(full(cheat))
        assert not v.passed, (cheat, v)


def test_attack_humaneval_protocol_forgery_scores_wrong() -> None:
    """Answers written on every descriptor by hand: the reply channel then holds two answers."""
    forge = (
        "import os\n"
        "for fd in range(3, 20):\n"
        "    try:\n"
        '        os.write(fd, b\'{"ok": "2"}\\n{"done": "x"}\\n\')\n'
        "    except OSError:\n"
        "        pass\n"
    )
    v = check(full(forge))
    assert not v.passed and "without one answer" in v.reason
    # forged after the call's own answer was due: printing goes to stderr, never the channel
    printer = '```python\ndef add_one(x):\n    print(\'{"ok": "2"}\')\n    return x + 1\n```'
    assert check(printer).passed  # printing is harmless: the honest answer still counts


def test_attack_humaneval_writing_the_checkers_files_does_not_land(tmp_path: Path) -> None:
    target = tmp_path / "checker-file.txt"
    target.write_text("original")
    target.chmod(0o666)
    tmp_path.chmod(0o777)
    cheat = (
        "import glob\n"
        f"for p in [{str(target)!r}] + glob.glob('/tmp/ptb-checker-*/*') + "
        "glob.glob('/tmp/ptb-checker-*'):\n"
        "    try:\n        open(p + '/x' if not p.endswith('.txt') else p, 'w').write('pwned')\n"
        "    except OSError:\n        pass\n"
    )
    v = check(f"```python\n{cheat}\ndef add_one(x):\n    return x + 1\n```")
    assert v.passed  # the answer itself is right; its writes went nowhere
    assert target.read_text() == "original"
    assert not list(Path("/tmp").glob("ptb-checker-*/x"))


def test_a_call_that_runs_forever_times_out_as_wrong() -> None:
    started = time.monotonic()
    v = check("    while True:\n        pass\n", call_timeout_s=2)
    assert not v.passed and "timed out" in v.reason
    assert time.monotonic() - started < 15


def _fake_bwrap(bin_dir: Path, fail_first: int, counter: Path) -> None:
    """A bwrap that passes the probe but fails to start the first `fail_first` sandboxes."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "bwrap"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *"--unshare-all --ro-bind / / -- /bin/true"*) exec /usr/bin/bwrap "$@";; esac\n'  # noqa: E501
        f"n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}\n"
        f'if [ "$n" -lt {fail_first} ]; then echo "bwrap: setting up uid map: denied" >&2; exit 1; fi\n'  # noqa: E501
        'exec /usr/bin/bwrap "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_a_sandbox_that_fails_to_start_once_is_retried_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_bwrap(tmp_path / "bin", 1, tmp_path / "n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    v = check(RIGHT)
    assert v.passed and v.attempts == 2
    assert v.retried_because and "stopped before the tests" in v.retried_because


def test_a_sandbox_that_never_starts_is_an_infrastructure_error_not_a_wrong_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_bwrap(tmp_path / "bin", 99, tmp_path / "n")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    with pytest.raises(EvaluationError) as err:
        check("    return x\n")  # even a wrong answer is not scored when the harness failed
    assert err.value.kind == "infrastructure" and "failed twice" in err.value.message


def test_without_bubblewrap_nothing_runs_unless_the_user_opts_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "bin"
    broken.mkdir()
    (broken / "bwrap").write_text("#!/bin/sh\nexit 1\n")
    (broken / "bwrap").chmod(0o755)
    monkeypatch.setenv("PATH", f"{broken}:{os.environ['PATH']}")
    monkeypatch.delenv(code_sandbox.OPT_IN_ENV, raising=False)
    with pytest.raises(code_sandbox.CodeSandboxUnavailable) as err:
        check(RIGHT)
    assert "apt-get install bubblewrap" in str(err.value)
    assert f"{code_sandbox.OPT_IN_ENV}=rlimits-only" in str(err.value)
    monkeypatch.setenv(code_sandbox.OPT_IN_ENV, "rlimits-only")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    env_test = "def check(candidate):\n    assert candidate(0) == 1\n"
    leak = (
        "    import os\n"
        "    assert not [k for k in os.environ if k.startswith('PTB') or 'KEY' in k], "
        "dict(os.environ)\n"
        "    return x + 1\n"
    )
    v = check(leak, test=env_test)
    assert v.passed and v.isolation == "rlimits-only", v


@pytest.mark.parametrize(
    ("completion", "code"),
    [
        ("```python\nreturn 1\n```\n```python\nreturn 2\n```", "return 1\n"),  # the first block
        ("<think>```python\ndraft\n```</think>```python\nfinal\n```", "draft\n"),  # thinking too
        ("```py\nreturn 1\n```", "```py\nreturn 1\n```"),  # not a python fence: all of it
        ("```\nreturn 1\n```", "```\nreturn 1\n```"),
        ("    return 1\n", "    return 1\n"),
    ],
)
def test_code_is_found_by_the_references_rule(completion: str, code: str) -> None:
    assert find_code(completion) == code
