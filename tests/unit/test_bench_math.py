"""GSM8K, AIME 2025 and GPQA: exact answers, seeded choice shuffles, loading from hub-cache
fixtures in the upstream schema, and each task end to end (mockllm and the tiny model)."""

from collections import Counter
from pathlib import Path

import pytest

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.errors import DataUnavailableError
from posttrainbench.evaluate.answers import choice_letter, final_answer, numbers_equal, to_number
from posttrainbench.evaluate.benchmarks.base import TaskOptions, make_task
from posttrainbench.evaluate.benchmarks.gpqamain import shuffled
from posttrainbench.evaluate.benchmarks.gsm8k import split_answer
from tests.fixtures.hub import hf_home
from tests.fixtures.math_data import write_aime, write_gpqa, write_gsm8k


@pytest.mark.parametrize(
    ("completion", "target", "right"),
    [
        ("so the total is 711.\nANSWER: 711", "11", False),  # the reference's endswith bug
        ("ANSWER: 11", "11", True),
        ("ANSWER: 1,000", "1000", True),
        ("ANSWER: $18.00", "18", True),
        ("The answer is **42**.", "42", True),
        ("ANSWER: -3", "3", False),
        ("ANSWER: 3", "-3", False),
        ("#### 72", "72", True),
        ("\\boxed{204}", "204", True),
        ("ANSWER: 1/2", "0.5", True),
        ("ANSWER: 50%", "50", True),
        ("ANSWER: 42 apples", "42", True),
        ("I do not know.", "7", False),
        ("", "7", False),
        ("ANSWER: 7.5", "7", False),
        ("first 5 then ANSWER: 12\nnext line 99", "12", True),
    ],
)
def test_numeric_answers_are_compared_exactly(completion: str, target: str, right: bool) -> None:
    assert numbers_equal(final_answer(completion), target) is right


def test_numbers_normalise() -> None:
    assert to_number("1,234.50") == to_number("1234.5")
    assert to_number("12,34") is None  # not a thousands separator
    assert to_number("x") is None


@pytest.mark.parametrize(
    ("completion", "letter"),
    [("ANSWER: C", "C"), ("I think (B) is right", "B"), ("ANSWER: $D$", "D"), ("none", None)],
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


def test_gsm8k_answer_split_drops_calculator_notes() -> None:
    reasoning, final = split_answer("She has 2*3=<<2*3=6>>6.\n#### 1,006")
    assert reasoning == "She has 2*3=6." and final == "1006"


def test_loaders_read_the_hub_cache(tmp_path: Path) -> None:
    with hf_home(tmp_path / "hf"):
        write_gsm8k(tmp_path / "hf", n_test=4)
        write_aime(tmp_path / "hf")
        write_gpqa(tmp_path / "hf")
        gsm = BENCHMARKS.get("gsm8k").implementation().samples("test")
        assert [s.id for s in gsm] == [f"gsm8k-test-{i}" for i in range(4)]
        system = gsm[0].input[0]  # type: ignore[index]
        assert system.role == "system" and system.text.count("ANSWER:") == 10
        assert "<<" not in system.text and gsm[0].target == "12"
        aime = BENCHMARKS.get("aime2025").implementation().samples("test")
        assert aime[0].target == "70" and "ANSWER" in str(aime[0].input)
        gpqa = BENCHMARKS.get("gpqamain").implementation().samples("test")
        assert len(gpqa) == 3 and gpqa[0].choices and len(gpqa[0].choices) == 4
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
        write_gsm8k(tmp_path / "hf", n_test=3)
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


@pytest.mark.parametrize("benchmark", ["gsm8k", "aime2025", "gpqamain"])
def test_end_to_end_on_the_tiny_model(benchmark: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    from posttrainbench.evaluate.run import evaluate_model

    with hf_home(tmp_path / "hf"):
        write_gsm8k(tmp_path / "hf", n_test=4)
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
        write_gsm8k(tmp_path / "hf", n_test=3)
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
