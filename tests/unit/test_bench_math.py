"""GSM8K, AIME 2025 and GPQA: exact answers, seeded choice shuffles, loading from hub-cache
fixtures in the upstream schema, and each task end to end (mockllm and the tiny model)."""

import random
from collections import Counter
from fractions import Fraction
from pathlib import Path

import pytest

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.errors import DataUnavailableError
from posttrainbench.evaluate.answers import (
    choice_letter,
    last_number,
    number_value,
    numbers_equal,
    strip_boxed,
)
from posttrainbench.evaluate.benchmarks.base import TaskOptions, make_task
from posttrainbench.evaluate.benchmarks.gpqamain import shuffled
from posttrainbench.evaluate.benchmarks.gsm8k import fewshot_indices, split_answer, target
from tests.fixtures.hub import hf_home
from tests.fixtures.math_data import gsm8k_rows, write_aime, write_gpqa, write_gsm8k


def _gsm8k(completion: str, target: str) -> bool:
    return numbers_equal(last_number(completion), target)


def _aime(completion: str, target: str) -> bool:
    return numbers_equal(last_number(strip_boxed(completion)), target)


# The reference (PostTrainBench src/eval/exact_numeric_match.py over inspect_ai's
# match(numeric=True)) reads the output's last whitespace-separated number word, wherever it is,
# after dropping `$ £ € , * _` and dots not followed by a digit; we compare it exactly.
@pytest.mark.parametrize(
    ("completion", "target", "right"),
    [
        ("so the total is 711.\nANSWER: 711", "11", False),  # the reference's endswith bug
        ("ANSWER: 11", "11", True),
        ("ANSWER: 1,000", "1000", True),
        ("ANSWER: 14,000", "14,000", True),
        ("ANSWER: $18.00.", "18", True),
        ("The answer is **42**.", "42", True),
        ("ANSWER: 42 apples", "42", True),
        ("ANSWER: -3", "3", False),
        ("ANSWER: 3", "-3", False),
        ("ANSWER: -3", "-3", True),
        ("#### 72", "72", True),
        ("ANSWER: .5", "0.5", True),  # ".5" is 0.5
        ("ANSWER: 7.5", "7", False),
        ("ANSWER: 262499", "262500", False),  # upstream's 5 significant digits made these equal
        # "10", "-", "3", "=", "7": the last number word is 7 ("-" alone is no number)
        ("ANSWER: 10 - 3 = 7", "7", True),
        ("ANSWER: 10 - 3 = 7", "10", False),
        # the last number of the whole output, not of the ANSWER line: 5, so 204 is wrong
        ("ANSWER: 204\n\nNote: 5 steps", "204", False),
        ("ANSWER: 204\n\nNote: 5 steps", "5", True),
        ("first 5 then ANSWER: 12\nnext line 99", "12", False),
        ("ANSWER: 1/2", "0.5", False),  # "1/2" and "50%" are no number words
        ("ANSWER: 50%", "50", False),
        ("\\boxed{204}", "204", False),  # GSM8K does not unwrap \boxed
        ("ANSWER: .10.00.50", "50", False),  # does not parse: upstream crashed, here wrong
        ("ANSWER: 2⁴", "16", False),  # upstream reads 16: DEVIATIONS.md
        ("I do not know.", "7", False),
        ("", "7", False),
    ],
)
def test_gsm8k_answers_are_the_last_number_compared_exactly(
    completion: str, target: str, right: bool
) -> None:
    assert _gsm8k(completion, target) is right


@pytest.mark.parametrize(
    ("completion", "target", "right"),
    [
        ("ANSWER: \\boxed{11}", "11", True),  # inspect_evals' AIME scorer unwraps \boxed
        ("so \\boxed{204}.", "204", True),
        ("ANSWER: 711", "11", False),
        ("ANSWER: 149", "49", False),
        ("ANSWER: 049", "49", True),
        ("ANSWER: 49.0", "49", True),
        ("ANSWER: 49 and then 50", "49", False),  # the last number counts
        ("ANSWER: 11.0001", "11", False),  # upstream's 5 significant digits: right
    ],
)
def test_aime_answers_unwrap_boxed(completion: str, target: str, right: bool) -> None:
    assert _aime(completion, target) is right


def test_number_words() -> None:
    assert last_number("ANSWER: 10 - 3 = 7") == "7"
    assert last_number("x = -12.") == "-12"
    assert last_number("no digits") is None
    assert number_value(".5") == Fraction(1, 2)
    assert number_value("1.2.3") == Fraction(6, 5)  # inspect's parser reads the leading decimal
    assert number_value(".1.2") is None
    with pytest.raises(ValueError, match="not a number"):
        numbers_equal("5", "five")


# inspect_ai's parse_answers as the reference ran it (0.1.dev3780, solver/_multiple_choice.py):
# the first line starting `ANSWER:`, else the first `ANSWER:` anywhere; the rest of the line must
# be exactly one capital choice letter.
@pytest.mark.parametrize(
    ("completion", "letter"),
    [
        ("ANSWER: B", "B"),
        ("Reasoning.\nANSWER: C.", "C"),
        ("answer: D", "D"),  # the keyword is matched in any case
        ("**ANSWER: A**", "A"),  # no line starts with ANSWER: the lenient search finds it
        ("ANSWER: A\nOn reflection\nANSWER: C", "A"),  # the first, not the last
        ("… the answer is B … A good guess.", None),  # no ANSWER: line, no answer
        ("I think (B) is right", None),
        ("ANSWER: B and C", None),
        ("ANSWER: B, C", None),
        ("ANSWER: BC", None),
        ("ANSWER: (B)", None),  # "(" is not allowed after the colon
        ("ANSWER: b", None),  # letters must be capitals
        ("ANSWER: $D$", None),
        ("ANSWER: E", None),
        ("none", None),
    ],
)
def test_choice_letters(completion: str, letter: str | None) -> None:
    assert choice_letter(completion) == letter


def test_choice_shuffles_are_seeded_per_item() -> None:
    a = shuffled("rec1", "right", ["w1", "w2", "w3"])
    assert a == shuffled("rec1", "right", ["w1", "w2", "w3"])  # same item, same exam
    choices, letter = a
    assert choices["ABCD".index(letter)] == "right"
    letters = Counter(shuffled(f"rec{i}", "r", ["a", "b", "c"])[1] for i in range(40))
    assert set(letters) == set("ABCD") and max(letters.values()) <= 20


def test_gsm8k_answer_split_keeps_calculator_notes_as_inspect_evals() -> None:
    reasoning, final = split_answer("She has 2*3=<<2*3=6>>6.\n#### 1,006")
    assert reasoning == "She has 2*3=<<2*3=6>>6." and final == "1,006"
    assert target("She has 2*3=<<2*3=6>>6.\n#### 1,006") == "1006"


def test_gsm8k_shots_are_the_datasets_shuffle_of_train() -> None:
    """The ten shots are the first rows of `Dataset.shuffle(seed=42)` over the 7,473 train
    rows, computed here without datasets; checked against datasets itself."""
    from datasets import Dataset

    n_train = 7473
    shuffled = Dataset.from_dict({"row": list(range(n_train))}).shuffle(seed=42)
    expected = [shuffled[i]["row"] for i in range(10)]
    assert fewshot_indices(n_train, 10) == expected
    assert expected != random.Random(42).sample(range(n_train), 10)  # the old draw differs


def test_loaders_read_the_hub_cache(tmp_path: Path) -> None:
    with hf_home(tmp_path / "hf"):
        write_gsm8k(tmp_path / "hf")
        write_aime(tmp_path / "hf")
        write_gpqa(tmp_path / "hf")
        gsm = BENCHMARKS.get("gsm8k").implementation().samples("test")
        assert [s.id for s in gsm[:4]] == [f"gsm8k-test-{i}" for i in range(4)]
        assert len(gsm) == BENCHMARKS.get("gsm8k").n_items
        system = gsm[0].input[0]  # type: ignore[index]
        assert system.role == "system" and system.text.count("ANSWER:") == 10
        assert "<<" in system.text and gsm[0].target == "12"
        train = gsm8k_rows(20, offset=1000)
        first = train[fewshot_indices(20, 10)[0]]
        reasoning = first["answer"].rpartition("####")[0].strip()
        final = first["answer"].rpartition("####")[2].strip()
        assert system.text.startswith(
            f"{first['question']}\n\nReasoning:\n{reasoning}\n\nANSWER: {final}\n\n"
        )
        aime = BENCHMARKS.get("aime2025").implementation().samples("test")
        assert aime[0].target == "70" and "ANSWER" in str(aime[0].input)
        gpqa = BENCHMARKS.get("gpqamain").implementation().samples("test")
        assert len(gpqa) == 448 and gpqa[0].choices and len(gpqa[0].choices) == 4
        assert gpqa[0].choices["ABCD".index(str(gpqa[0].target))] == "Mitochondria"


def test_missing_data_names_the_prefetch(tmp_path: Path) -> None:
    with hf_home(tmp_path / "hf"), pytest.raises(DataUnavailableError) as err:
        BENCHMARKS.get("gsm8k").implementation().samples("test")
    assert "ptb data prefetch --benchmarks gsm8k" in (err.value.hint or "")


def _scripted(tmp_path: Path, benchmark: str, answers: list[str]) -> float:
    from inspect_ai import eval as inspect_eval
    from inspect_ai.model import ModelOutput, ModelUsage, get_model

    outputs = []
    for text in answers:
        out = ModelOutput.from_content(model="mockllm/model", content=text)
        out.usage = ModelUsage(input_tokens=1, output_tokens=1, total_tokens=2)
        outputs.append(out)
    task = make_task(BENCHMARKS.get(benchmark).implementation(), TaskOptions(limit=len(answers)))
    log = inspect_eval(
        task, model=get_model("mockllm/model", custom_outputs=outputs), log_dir=str(tmp_path),
        display="none", max_connections=1, max_samples=1,
    )[0]  # fmt: skip
    assert log.results is not None
    return float(log.results.scores[0].metrics["accuracy"].value)


def test_scorers_through_the_whole_task(tmp_path: Path) -> None:
    with hf_home(tmp_path / "hf"):
        write_gsm8k(tmp_path / "hf")
        write_gpqa(tmp_path / "hf")
        # targets 12, 24, 36: right, the 711-for-11 kind of wrong, right with commas
        assert _scripted(tmp_path, "gsm8k", ["ANSWER: 12", "ANSWER: 124", "ANSWER: 36.0"]) == (
            pytest.approx(2 / 3)
        )
        gpqa = BENCHMARKS.get("gpqamain").implementation().samples("test")
        right = [f"ANSWER: {s.target}" for s in gpqa]
        assert _scripted(tmp_path, "gpqamain", right) == 1.0
        wrong = [f"ANSWER: {'A' if s.target != 'A' else 'B'}" for s in gpqa]
        assert _scripted(tmp_path, "gpqamain", wrong) == 0.0
        no_line = [f"So the answer is {s.target}." for s in gpqa]  # no ANSWER: line
        assert _scripted(tmp_path, "gpqamain", no_line) == 0.0
        write_aime(tmp_path / "hf")
        # targets 70, 71, 72: boxed and right, the endswith kind of wrong, a later number
        aime = ["ANSWER: \\boxed{70}", "ANSWER: 171", "ANSWER: 72\n\nNote: 5 steps"]
        assert _scripted(tmp_path, "aime2025", aime) == pytest.approx(1 / 3)


@pytest.mark.parametrize("benchmark", ["gsm8k", "aime2025", "gpqamain"])
def test_end_to_end_on_the_tiny_model(benchmark: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    from posttrainbench.evaluate.run import evaluate_model

    with hf_home(tmp_path / "hf"):
        write_gsm8k(tmp_path / "hf")
        write_aime(tmp_path / "hf")
        write_gpqa(tmp_path / "hf")
        m = evaluate_model(
            tiny_model_dir, benchmark, tmp_path / "eval", limit=3, template_family="ptb-tiny",
            max_tokens=16,
        )  # fmt: skip
    assert m.n_samples == 3 and 0.0 <= m.score <= 1.0 and m.max_tokens == 16
    assert (tmp_path / "eval" / "metrics.json").is_file()
    assert m.datasets and m.datasets[0].startswith("hf:")


def test_export_is_byte_identical_and_self_contained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The integrity check re-derives eval_data/ and compares bytes; inside a sandbox the
    exported inputs alone must rebuild the same task, without its targets."""
    with hf_home(tmp_path / "hf"):
        write_gsm8k(tmp_path / "hf")
        impl = BENCHMARKS.get("gsm8k").implementation()
        a = impl.export(tmp_path / "a").read_bytes()
        b = impl.export(tmp_path / "b").read_bytes()
        assert a == b
        direct = impl.samples("test")
    monkeypatch.setenv("PTB_EVAL_DATA_DIR", str(tmp_path / "a"))
    task = make_task(impl, TaskOptions())
    assert [s.id for s in task.dataset] == [s.id for s in direct]
    texts = [[m.text for m in s.input] for s in direct if not isinstance(s.input, str)]
    assert [
        [m.text for m in s.input] for s in task.dataset if not isinstance(s.input, str)
    ] == texts
    assert all(s.target == "" for s in task.dataset)  # the targets stay with the harness
