"""Every benchmark checks, at load, that its full test set has the size the catalog declares:
a source one item short (upstream, or the copy exported to an agent's workspace) is a one-line
error naming the source and both counts; the full fixture loads."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.errors import DataUnavailableError
from posttrainbench.evaluate.benchmarks.base import EVAL_DATA_VAR, TaskOptions, make_task
from tests.fixtures.code_data import bfcl_files, humaneval_rows, write_bfcl, write_humaneval
from tests.fixtures.hub import hf_home, write_snapshot
from tests.fixtures.judged_data import write_arena, write_healthbench
from tests.fixtures.math_data import write_aime, write_gpqa, write_gsm8k


def _humaneval_short(root: Path) -> None:
    src = BENCHMARKS.get("humaneval").sources[0]
    write_snapshot(
        root / "hf",
        "openai/openai_humaneval",
        {"openai_humaneval/test-00000-of-00001.parquet": humaneval_rows()[:-1]},
        revision=src.revision,  # type: ignore[union-attr]
    )


def _bfcl_short(root: Path) -> None:
    questions, answers = bfcl_files()
    lines = [x for x in questions.split("\n") if x.strip()]
    src = BENCHMARKS.get("bfcl").sources[0]
    write_snapshot(
        root / "hf",
        "gorilla-llm/Berkeley-Function-Calling-Leaderboard",
        {
            "BFCL_v3_exec_simple.json": "\n".join(lines[:-1]) + "\n",
            "possible_answer/BFCL_v3_exec_simple.json": answers,
        },
        revision=src.revision,  # type: ignore[union-attr]
    )


Writer = Callable[[Path], object]
# benchmark: (full fixture, the same one item short)
FIXTURES: dict[str, tuple[Writer, Writer]] = {
    "gsm8k": (lambda r: write_gsm8k(r / "hf"), lambda r: write_gsm8k(r / "hf", missing=1)),
    "aime2025": (lambda r: write_aime(r / "hf"), lambda r: write_aime(r / "hf", missing=1)),
    "gpqamain": (lambda r: write_gpqa(r / "hf"), lambda r: write_gpqa(r / "hf", missing=1)),
    "humaneval": (lambda r: write_humaneval(r / "hf"), _humaneval_short),
    "bfcl": (lambda r: write_bfcl(r / "hf"), _bfcl_short),
    "healthbench": (write_healthbench, lambda r: write_healthbench(r, missing=1)),
}
OPTS = TaskOptions(limit=1, judge_model="openai/gpt-5-mini")


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PTB_CACHE", str(tmp_path))
    monkeypatch.delenv(EVAL_DATA_VAR, raising=False)
    return tmp_path


@pytest.mark.parametrize("benchmark", sorted(FIXTURES))
def test_a_source_one_item_short_is_refused(benchmark: str, root: Path) -> None:
    info = BENCHMARKS.get(benchmark)
    full, short = FIXTURES[benchmark]
    with hf_home(root / "hf"):
        full(root)
        assert make_task(info.implementation(), OPTS).dataset  # the full set loads
        short(root)
        with pytest.raises(DataUnavailableError) as err:
            make_task(info.implementation(), OPTS)
    message = str(err.value)
    assert "\n" not in message and info.sources[0].label in message, message
    assert f"gave {info.n_items - 1} test items" in message, message  # type: ignore[operator]
    assert f"the catalog declares {info.n_items}" in message, message


@pytest.mark.parametrize("benchmark", [*sorted(FIXTURES), "arenahardwriting"])
def test_a_shortened_workspace_copy_is_refused(
    benchmark: str, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent's evaluate.py reads the exported items: one deleted is refused too (the
    pinned Arena question file cannot be shortened without failing its sha256)."""
    info = BENCHMARKS.get(benchmark)
    with hf_home(root / "hf"):
        if benchmark == "arenahardwriting":
            write_arena(root)
        else:
            FIXTURES[benchmark][0](root)
        path = info.implementation().export(root / "eval_data")
        rows = [x for x in path.read_text().split("\n") if x.strip()]
        assert len(rows) == info.n_items
        path.write_text("\n".join(rows[:-1]) + "\n")
        monkeypatch.setenv(EVAL_DATA_VAR, str(root / "eval_data"))
        with pytest.raises(DataUnavailableError, match=f"gave {len(rows) - 1} test items"):
            make_task(info.implementation(), OPTS)
    assert json.loads(rows[0])["id"]
