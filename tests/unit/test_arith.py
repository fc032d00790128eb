import json
import stat
from pathlib import Path

import pytest

from posttrainbench.embedded import arith
from posttrainbench.errors import EvaluationError


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PTB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PTB_IN_SANDBOX", raising=False)
    return tmp_path / "cache"


def test_splits_are_disjoint_deterministic_and_leave_items_withheld() -> None:
    splits = {s: arith.split_items(s) for s in ("train", "dev", "test")}
    ids = {s: {i.id for i in items} for s, items in splits.items()}
    for split, size in arith.SPLIT_SIZES.items():
        assert len(ids[split]) == size
    assert not ids["test"] & ids["train"] and not ids["test"] & ids["dev"]
    assert not ids["dev"] & ids["train"]
    # Some items are in no split: the test split is not the complement of the public ones.
    assert sum(map(len, ids.values())) < 2 * arith.OPERAND_RANGE**2
    assert arith.split_items("test") == splits["test"]


def test_the_split_key_is_harness_side_and_private(own_cache: Path) -> None:
    first = {i.id for i in arith.split_items("test")}
    key = own_cache / arith.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().strip() not in Path(arith.__file__).read_text()
    key.unlink()  # another installation: another key, another test split
    assert {i.id for i in arith.split_items("test")} != first


def test_inside_a_sandbox_no_key_is_made_and_test_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_cache: Path
) -> None:
    data = arith.write_public_data(tmp_path / "data")
    (own_cache / arith.KEY_FILE).unlink()
    monkeypatch.setenv("PTB_IN_SANDBOX", "1")
    monkeypatch.setenv("PTB_DATA_DIR", str(data))
    with pytest.raises(EvaluationError, match="held out by the harness"):
        arith.split_items("test")
    assert not (own_cache / arith.KEY_FILE).exists()
    dev = arith.split_items("dev")
    assert [json.loads(line)["id"] for line in (data / "dev.jsonl").read_text().splitlines()] == [
        i.id for i in dev
    ]


def test_answers_are_right() -> None:
    for item in arith.split_items("test")[:50]:
        a, op, b = item.question.removeprefix("What is ").removesuffix("?").split()
        assert int(item.answer) == (int(a) + int(b) if op == "+" else int(a) - int(b))


def test_extract_answer() -> None:
    assert arith.extract_answer(" 46") == "46"
    assert arith.extract_answer("The answer is -7, not 3") == "-7"
    assert arith.extract_answer("no digits") is None


def test_public_data_holds_no_test_item_and_follows_the_key(
    tmp_path: Path, own_cache: Path
) -> None:
    dest = arith.write_public_data(tmp_path / "arith")
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "dev.jsonl", "train.jsonl"]

    def public() -> set[str]:
        return {
            json.loads(line)["question"]
            for name in ("train.jsonl", "dev.jsonl")
            for line in (dest / name).read_text().splitlines()
        }

    assert not public() & {i.question for i in arith.split_items("test")}
    (own_cache / arith.KEY_FILE).unlink()
    arith.write_public_data(dest)  # a new key: the cached public data is rewritten
    assert not public() & {i.question for i in arith.split_items("test")}
