"""The memorisation probe: perturbed twins whose answers stay right, the score and its bound, the
check's wiring, and — on tiny models trained here — that it separates a model trained on the
test items from one trained on other problems of the same style."""

from __future__ import annotations

import json
import os
import random
import re
from fractions import Fraction
from pathlib import Path

import pytest

from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.config import Settings, load_settings
from posttrainbench.embedded import arith
from posttrainbench.errors import ConfigError
from posttrainbench.evaluate.chat_templates import read_template
from posttrainbench.integrity import memorisation, perturb
from posttrainbench.integrity.base import CHECKS, CheckContext
from posttrainbench.records import CollectOutcome, RunRecord, RunSpec
from posttrainbench.results.layout import RunPaths
from posttrainbench.runner import harness_info
from tests.fixtures import memorised
from tests.fixtures.code_data import humaneval_rows
from tests.fixtures.hub import hf_home, write_snapshot
from tests.fixtures.models import build_family_model
from tests.fixtures.wordproblems import TEST_ITEMS, TRAIN_ITEMS

GSM8K_REVISION = "cc7b047b6e5bb11b4f1af84efc572db110a51b3c"
NOTE = re.compile(r"<<([^<>=]*)=([^<>=]*)>>")


def test_calc_is_exact_and_evaluates_nothing_but_arithmetic() -> None:
    assert perturb.calc("48*3/4") == 36
    assert perturb.calc("2,400/(80-20)") == 40
    assert perturb.calc("-1.5+2") == Fraction(1, 2)
    for hostile in ("__import__('os').system('id')", "2**100000", "x+1", "[1][0]", "1/0"):
        with pytest.raises(perturb.CalcError):
            perturb.calc(hostile)


def test_gsm8k_twins_change_the_numbers_and_recompute_every_step() -> None:
    twins = []
    for item in TEST_ITEMS + TRAIN_ITEMS:
        twin = perturb.gsm8k_twin(item["question"], item["answer"], random.Random(7))
        if twin is None:
            continue
        twins.append(twin)
        assert twin.question != item["question"]
        notes = NOTE.findall(twin.answer)
        assert len(notes) == len(NOTE.findall(item["answer"]))
        for expr, stated in notes:
            assert perturb.calc(expr) == Fraction(stated.replace(",", "")), twin.answer
            assert perturb.calc(expr) > 0  # positive stays positive
        assert Fraction(twin.final.replace(",", "")) == Fraction(notes[-1][1].replace(",", ""))
        assert twin.answer.rpartition("####")[2].strip() == twin.final
    assert len(twins) >= 18, f"only {len(twins)} of 24 items perturbed"


def test_an_item_whose_chain_does_not_re_evaluate_is_left_out() -> None:
    wrong = "He has 3+4=<<3+4=8>>8 apples.\n#### 8"
    assert perturb.gsm8k_twin("Tom has 3 apples and buys 4.", wrong, random.Random(0)) is None
    unknown = "It is 2^3=<<2^3=8>>8.\n#### 8"
    assert perturb.gsm8k_twin("Raise 2 to 3.", unknown, random.Random(0)) is None


def test_renamed_humaneval_solutions_still_pass_their_renamed_tests() -> None:
    rows = humaneval_rows()
    pools = (
        sorted({r["entry_point"] for r in rows}),
        sorted({a for r in rows for a in perturb.defined_names(r["prompt"])[1]}),
    )
    passed = 0
    for row in rows:
        twin = perturb.rename_code(
            row["prompt"], row["canonical_solution"], row["test"], row["entry_point"],
            random.Random(3), pools,
        )  # fmt: skip
        assert twin is not None, row["task_id"]
        assert twin.entry_point != row["entry_point"]
        assert not re.search(rf"\b{row['entry_point']}\b", twin.prompt + twin.solution)
        namespace: dict[str, object] = {}
        exec(twin.prompt + twin.solution + "\n" + twin.test, namespace)  # the benchmark's own code
        check = namespace["check"]
        assert callable(check)
        check(namespace[twin.entry_point])
        passed += 1
    assert passed == len(rows) == 164


def test_renaming_leaves_data_strings_and_attributes_alone() -> None:
    prompt = (
        'def encode(message):\n    """Encode the message.\n    >>> encode("a message")\n    """\n'
    )
    solution = "    return message.upper()\n"
    test = "def check(candidate):\n    assert candidate('message') == 'MESSAGE'\n"
    twin = perturb.rename_code(prompt, solution, test, "encode", random.Random(0))
    assert twin is not None
    assert "'message'" in twin.test and "'MESSAGE'" in twin.test  # test data untouched
    assert ".upper()" in twin.solution and "message" not in twin.solution
    upper = perturb.rename_code(
        "def upper(s):\n", "    return s.upper()\n", "", "upper", random.Random(0)
    )
    assert upper is None  # `upper` is also an attribute: renaming it would change the code


def test_reordered_choices_keep_the_answer() -> None:
    choices = ["4", "3", "5", "22"]
    for seed in range(20):
        twin = perturb.reorder_choices(choices, 0, random.Random(seed))
        assert twin is not None
        assert twin[0] != choices and twin[0][twin[1]] == "4"


def test_arith_twins_come_from_the_withheld_rest(cache_dir: Path) -> None:
    items = memorisation.probe_items(BENCHMARKS.get("arith").implementation(), n=300)
    shown = {i.question for split in arith.SPLIT_SIZES for i in arith.split_items(split)}
    test = {i.id for i in arith.split_items("test")}
    assert len(items) == 200  # the withheld rest: 1,800 items less 300 + 200 + 1,100 shown
    for item in items:
        assert item.id in test
        assert item.twin_prompt not in shown
        a, op, b = item.twin_prompt.removeprefix("What is ").removesuffix("?").split()
        assert int(item.twin_answer) == (int(a) + int(b) if op == "+" else int(a) - int(b))
        assert op in item.prompt


def test_the_score_is_paired_and_the_bound_widens_with_noise() -> None:
    base = [0.0, 0.1, -0.1, 0.0]
    fig = memorisation.compare([1.0, 1.1, 0.9, 1.0], base, None)
    assert fig.score == pytest.approx(1.0) and fig.beyond
    assert fig.bound == memorisation.BOUND
    twin = [0.9, 1.0, 0.8, 0.9]  # the instruct twin prefers the originals as much: not held
    assert not memorisation.compare([1.0, 1.1, 0.9, 1.0], base, twin).beyond
    noisy = memorisation.compare([3.0, -2.0, 2.5, -2.0], base, None)
    assert noisy.bound > memorisation.BOUND and not noisy.beyond


def _context(root: Path, settings: Settings, bench: str, model: str) -> CheckContext:
    paths = RunPaths(root / "run")
    spec = RunSpec(run_id="r", agent="command", base_model=model, benchmark=bench, budget_s=60)
    record = RunRecord(spec=spec, harness=harness_info())
    record.collect = CollectOutcome(status="collected")
    return CheckContext(
        paths=paths,
        record=record,
        model=MODELS.get(model),
        bench=BENCHMARKS.get(bench),
        settings=settings,
    )


def test_the_check_is_registered_and_skips_benchmarks_without_a_twin(
    tmp_path: Path, settings: Settings
) -> None:
    check = CHECKS.get("memorisation")()
    outcome = check.run(_context(tmp_path, settings, "aime2025", "ptb-tiny"))
    assert outcome.status == "skipped"
    assert outcome.reasons == ["no perturbation of aime2025's items is defined"]


def test_the_check_on_the_embedded_default_passes_the_base_itself(
    tmp_path: Path, settings: Settings, tiny_model_dir: Path
) -> None:
    ctx = _context(tmp_path, settings, "arith", "ptb-tiny")
    ctx.paths.final_model.parent.mkdir(parents=True, exist_ok=True)
    ctx.paths.final_model.symlink_to(tiny_model_dir)
    outcome = CHECKS.get("memorisation")().run(ctx)
    assert outcome.status == "passed", outcome
    assert outcome.figures["n"] == memorisation.N_ITEMS
    assert outcome.figures["score"] == 0.0  # the same weights: every per-item gap is equal
    assert not [e for e in outcome.evidence if e.kind == "score"]


def test_the_operator_can_switch_the_probe_off_and_it_is_recorded(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_MEMORISATION_PROBE", "0")
    ctx = _context(tmp_path, load_settings(tmp_path / "results"), "arith", "ptb-tiny")
    ctx.paths.final_model.parent.mkdir(parents=True, exist_ok=True)
    ctx.paths.final_model.symlink_to(tiny_model_dir)
    outcome = CHECKS.get("memorisation")().run(ctx)
    assert outcome.status == "skipped" and "PTB_MEMORISATION_PROBE=0" in outcome.reasons[0]
    monkeypatch.setenv("PTB_MEMORISATION_PROBE", "maybe")
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "results")
    monkeypatch.delenv("PTB_MEMORISATION_PROBE")
    assert load_settings(tmp_path / "results").memorisation_probe


@pytest.fixture(scope="module")
def word_problems(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> dict[str, Path]:
    """A tiny Qwen3 base (its instruct twin beside it), GSM8K-shaped data, and two models
    trained from the base: on the test items (dirty) and on the train items (clean)."""
    root = tmp_path_factory.mktemp("memorised")
    hf = root / "hf"
    with hf_home(hf):
        _, base = build_family_model(hf, "qwen3")
        write_snapshot(
            hf,
            "openai/gsm8k",
            {
                "main/test-00000-of-00001.parquet": TEST_ITEMS,
                "main/train-00000-of-00001.parquet": TRAIN_ITEMS,
            },
            revision=GSM8K_REVISION,
        )
    dirty = memorised.train(base, memorised.CONTAMINATED_TEXTS, root / "dirty", steps=300)
    clean = memorised.train(base, memorised.CLEAN_TEXTS, root / "clean", steps=300)
    return {"hf": hf, "base": base, "dirty": dirty, "clean": clean}


def test_the_probe_separates_a_model_trained_on_the_test_items(
    word_problems: dict[str, Path],
) -> None:
    base, hf = word_problems["base"], word_problems["hf"]
    with hf_home(hf):
        items = memorisation.probe_items(BENCHMARKS.get("gsm8k").implementation())
    template = read_template("qwen3")
    floor = memorisation.BOUNDS["gsm8k"]
    contaminated = memorisation.probe(word_problems["dirty"], base, None, items, template, floor)
    honest = memorisation.probe(word_problems["clean"], base, None, items, template, floor)
    print(f"contaminated: {contaminated}\nclean: {honest}")
    assert contaminated.n == honest.n >= 8
    assert contaminated.score > contaminated.bound, contaminated
    assert honest.score < honest.bound, honest
    assert contaminated.score > 2 * floor > honest.score


def test_the_references_gaps_are_cached_by_model_items_and_template(
    word_problems: dict[str, Path], tmp_path: Path
) -> None:
    """A sweep scores the base once: its gaps are read back from the harness cache (the file is
    what is used), the final model's never are, and another template or changed base files
    miss the cache."""
    base, hf = word_problems["base"], word_problems["hf"]
    with hf_home(hf):
        items = memorisation.probe_items(BENCHMARKS.get("gsm8k").implementation())
    template, cache = read_template("qwen3"), tmp_path / "memorisation"
    first = memorisation.probe(word_problems["dirty"], base, None, items, template, cache=cache)
    (stored,) = cache.glob("*.json")  # the base's only
    assert stored.stem == memorisation.reference_key(base, base, items, template)
    again = memorisation.probe(word_problems["dirty"], base, None, items, template, cache=cache)
    assert again == first
    stored.write_text(json.dumps({"gaps": [1.0] * len(items)}))
    read = memorisation.probe(word_problems["clean"], base, None, items, template, cache=cache)
    assert read.base_gap == 1.0 and read.gap != 1.0  # the final model is always scored
    assert memorisation.reference_key(base, base, items, None) != stored.stem
    assert memorisation.reference_key(base, base, items[1:], template) != stored.stem
    weights = base / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1))
    assert memorisation.reference_key(base, base, items, template) != stored.stem


def test_the_check_records_memorisation_as_evidence_not_a_flag(
    word_problems: dict[str, Path], tmp_path: Path, settings: Settings
) -> None:
    ctx = _context(tmp_path, settings, "gsm8k", "Qwen/Qwen3-1.7B-Base")
    ctx.paths.final_model.parent.mkdir(parents=True, exist_ok=True)
    ctx.paths.final_model.symlink_to(word_problems["dirty"])
    with hf_home(word_problems["hf"]):
        outcome = CHECKS.get("memorisation")().run(ctx)
    assert outcome.status == "passed", outcome  # evidence for the judge and reviewer only
    (score,) = [e for e in outcome.evidence if e.kind == "score"]
    assert not score.decisive and "possible memorisation" in score.summary
    assert "twin_gap" in outcome.figures  # the instruct twin was cached and compared
    assert outcome.figures["score"] > outcome.figures["bound"] >= memorisation.BOUNDS["gsm8k"]


def test_the_scorer_masks_renamed_names_and_keeps_within_the_model_length() -> None:
    from tests.fixtures.models import tokenizer

    scorer = memorisation.Scorer(tokenizer("qwen3"), read_template("qwen3"))
    ids, start, scored = scorer.ids(
        "Write it.", "def f(numbers):\n    return numbers", ("numbers",)
    )
    assert len(ids) - start == len(scored) and not all(scored) and any(scored)
    long_ids, long_start, long_scored = scorer.ids("word " * 400, "answer " * 400, (), limit=128)
    assert len(long_ids) == 128 and len(long_ids) - long_start == len(long_scored) == 64
