import json
from pathlib import Path

from posttrainbench.embedded import arith


def test_splits_are_disjoint_deterministic_and_complete() -> None:
    splits = {s: arith.split_items(s) for s in ("train", "dev", "test")}
    ids = {s: {i.id for i in items} for s, items in splits.items()}
    assert len(ids["test"]) == arith.SPLIT_SIZES["test"]
    assert len(ids["dev"]) == arith.SPLIT_SIZES["dev"]
    assert not ids["test"] & ids["train"] and not ids["test"] & ids["dev"]
    assert not ids["dev"] & ids["train"]
    assert sum(map(len, ids.values())) == 2 * arith.OPERAND_RANGE**2
    assert arith.split_items("test") == splits["test"]


def test_answers_are_right() -> None:
    for item in arith.split_items("test")[:50]:
        a, op, b = item.question.removeprefix("What is ").removesuffix("?").split()
        assert int(item.answer) == (int(a) + int(b) if op == "+" else int(a) - int(b))


def test_extract_answer() -> None:
    assert arith.extract_answer(" 46") == "46"
    assert arith.extract_answer("The answer is -7, not 3") == "-7"
    assert arith.extract_answer("no digits") is None


def test_public_data_holds_no_test_item(tmp_path: Path) -> None:
    dest = arith.write_public_data(tmp_path / "arith")
    assert sorted(p.name for p in dest.iterdir()) == ["README.md", "dev.jsonl", "train.jsonl"]
    public = {
        json.loads(line)["question"]
        for name in ("train.jsonl", "dev.jsonl")
        for line in (dest / name).read_text().splitlines()
    }
    assert not public & {i.question for i in arith.split_items("test")}
