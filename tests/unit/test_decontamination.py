"""The decontamination check on the embedded default (ptb-tiny × arith), whose items are too
short for n-grams: test items kept verbatim, tokenised with the base tokenizer or gzipped are
flagged with the file, line and item; clean arith data (the public train split, other numbers, a
test question alone in code) is not; data the scanner cannot read fails the check closed."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.config import Settings
from posttrainbench.embedded import arith
from posttrainbench.integrity import frozen
from posttrainbench.integrity.base import CheckContext
from posttrainbench.integrity.decontamination import UNSCANNABLE_BYTES, DecontaminationCheck
from posttrainbench.records import CheckResult, RunRecord, RunSpec
from posttrainbench.results.layout import RunPaths
from posttrainbench.runner import harness_info
from posttrainbench.workspace import builder


def _context(tmp_path: Path, settings: Settings, files: dict[str, bytes]) -> CheckContext:
    paths = RunPaths(tmp_path / "run")
    model, bench = MODELS.get("ptb-tiny"), BENCHMARKS.get("arith")
    builder.write_evaluator(paths.workspace, model, bench)
    arith.write_public_data(paths.workspace / "data")
    for rel, data in files.items():
        (paths.workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (paths.workspace / rel).write_bytes(data)
    frozen.freeze(paths.workspace, paths.frozen_workspace)
    spec = RunSpec(
        run_id="r", agent="command", base_model="ptb-tiny", benchmark="arith", budget_s=60
    )
    record = RunRecord(spec=spec, harness=harness_info())
    return CheckContext(paths=paths, record=record, model=model, bench=bench, settings=settings)


def _decisive(check: CheckResult) -> set[tuple[str | None, int | None, str | None]]:
    return {(e.path, e.line, e.item) for e in check.evidence if e.decisive}


@pytest.fixture
def items(cache_dir: Path, tiny_model_dir: Path) -> list[arith.ArithItem]:
    return arith.split_items("test")[:4]


def test_arith_items_verbatim_tokenised_or_gzipped_are_flagged(
    tmp_path: Path, settings: Settings, items: list[arith.ArithItem]
) -> None:
    a, b, c, d = items
    train = arith.split_items("train")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(
        str(MODELS.get("ptb-tiny").locate(settings.models_dir) / "tokenizer.json")
    )
    other = [{"prompt": t.question, "completion": t.answer} for t in train[:50]]
    verbatim = [*other[:10], {"prompt": a.question, "completion": a.answer}, *other[10:]]
    tokenised = [{"input_ids": tok.encode(f"{t.question} {t.answer}").ids} for t in train[:5]]
    tokenised.insert(3, {"input_ids": tok.encode(f"Q: {b.question}\nA: {b.answer}").ids})
    table = pa.Table.from_pylist(tokenised)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    gz = "".join(json.dumps(r) + "\n" for r in [*other[:2], {"text": f"{c.question} = {c.answer}"}])
    ctx = _context(
        tmp_path,
        settings,
        {
            "sft.jsonl": "".join(json.dumps(r) + "\n" for r in verbatim).encode(),
            "tok/train.parquet": sink.getvalue().to_pybytes(),
            "packed/extra.jsonl.gz": gzip.compress(gz.encode()),
            "questions.txt": f"warm-up\n{d.question}\n".encode(),  # the question alone: a record
            "gen.py": f"PROMPT = {d.question!r}  # an example in code: not alone\n".encode(),
            "clean.jsonl": "".join(json.dumps(r) + "\n" for r in other).encode(),
            "synthetic.jsonl": b"".join(
                json.dumps({"q": f"What is {x} + {y}?", "a": str(x + y)}).encode() + b"\n"
                for x in range(31, 60)
                for y in range(3)
            ),
        },
    )
    check = DecontaminationCheck().run(ctx)
    assert check.status == "failed", check.reasons
    assert _decisive(check) == {
        ("sft.jsonl", 11, a.id),
        ("tok/train.parquet", 4, b.id),
        ("packed/extra.jsonl.gz", 3, c.id),
        ("questions.txt", 2, d.id),
    }, check.evidence
    assert check.figures["short_items_indexed"] == 300
    assert check.figures["token_decoder"] == 1.0


def test_clean_arith_data_is_not_flagged(
    tmp_path: Path, settings: Settings, items: list[arith.ArithItem]
) -> None:
    train = arith.split_items("train") + arith.split_items("dev")
    rows = [{"question": t.question, "answer": t.answer} for t in train]
    text = "".join(f"Q: {t.question}\nA: {t.answer}\n" for t in train)
    ctx = _context(
        tmp_path,
        settings,
        {
            "sft.json": json.dumps({"train": rows}).encode(),
            "all.txt.gz": gzip.compress(text.encode()),
            "train.py": f"EXAMPLE = {items[0].question!r}\n".encode(),
        },
    )
    check = DecontaminationCheck().run(ctx)
    assert check.status == "passed", check.reasons
    assert _decisive(check) == set()


def test_unscannable_data_is_listed_and_fails_closed_past_the_cap(
    tmp_path: Path, settings: Settings, items: list[arith.ArithItem]
) -> None:
    blob = random.Random(0).randbytes(UNSCANNABLE_BYTES // 4)  # fixed: a draw could sniff as gzip
    small = _context(tmp_path / "small", settings, {"shards/a.dat": blob})
    check = DecontaminationCheck().run(small)
    assert check.status == "passed"
    notes = {e.path: e.summary for e in check.evidence if not e.decisive}
    assert notes["shards/a.dat"].startswith("not scanned: not text"), notes

    files = {f"shards/{i}.dat": blob for i in range(4)}
    files["final_model/model.safetensors"] = blob * 8  # weights: listed, never counted
    check = DecontaminationCheck().run(_context(tmp_path / "large", settings, files))
    assert check.status == "failed"
    (closed,) = [e for e in check.evidence if e.decisive]
    assert closed.summary.startswith("unscannable: 4 data file(s), 10.0 MiB"), closed.summary
    assert "ptb review" in closed.summary
    assert check.figures["unscanned_data_bytes"] == UNSCANNABLE_BYTES


def test_what_counts_as_unscannable_data() -> None:
    """Data formats, pickles and binaries of no known format count towards failing closed; the
    model, installed packages, tool caches, weights and known binaries (a wheel's .so) do not."""
    from posttrainbench.integrity.decontamination import data_like
    from posttrainbench.integrity.texts import NOT_TEXT, Skipped

    counted = [
        Skipped("tokens.dat", NOT_TEXT),
        Skipped("cache/train.pkl", "weights or pickle"),
        Skipped("pack.tar.gz", "not scanned past a cap: over 256 MiB"),
        Skipped("pack.zip!inner/train.jsonl", "unreadable: ValueError: x"),
        Skipped("cache/tok.pt", "a pickle weights_only refuses (…)"),
        Skipped("home/data/blob", NOT_TEXT),
    ]
    not_counted = [
        Skipped("final_model/model.safetensors", "weights or pickle"),
        Skipped("final_model/extra.dat", NOT_TEXT),
        Skipped("ckpt/model.safetensors", "weights or pickle"),
        Skipped(".venv/lib/python3.11/site-packages/x/y.dat", NOT_TEXT),
        Skipped("home/.cache/pip/http-v2/a/b/c.body!x/_lib.so", "binary"),
        Skipped("home/.cache/pip/http-v2/a/b/c", NOT_TEXT),
        Skipped("tmp/pip-unpack-1234/x.whl", NOT_TEXT),
        Skipped("home/.triton/cache/k.cubin", NOT_TEXT),
        Skipped("pack.zip!lib/_x.so", "binary"),
        Skipped("plots/loss.png", "binary"),
    ]
    assert [s.path for s in counted if not data_like(s)] == []
    assert [s.path for s in not_counted if data_like(s)] == []


def test_an_evaluation_log_of_the_test_questions_is_not_contamination(
    tmp_path: Path, settings: Settings, items: list[arith.ArithItem]
) -> None:
    """The agent evaluates on the test questions it is given: an inspect log (a zip, as the
    workspace's evaluate.py writes) repeats each question alone, which is no evidence; an answer
    beside its question in such a log still is."""
    import io
    import zipfile

    def log(samples: dict[str, dict[str, object]]) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as z:
            z.writestr("header.json", json.dumps({"eval": {"task": "arith"}}))
            for name, sample in samples.items():
                z.writestr(f"samples/{name}_epoch_1.json", json.dumps(sample))
        return out.getvalue()

    a, b = items[:2]
    wrong = f"I think {int(a.answer) + 1}"  # items are drawn per key: a fixed guess can be right
    own = log({"arith-test-0": {"input": a.question, "output": wrong, "target": ""}})
    leak = log({"arith-test-1": {"input": f"{b.question} {b.answer}", "target": ""}})
    ctx = _context(tmp_path, settings, {"logs/own.eval": own, "logs/leak.eval": leak})
    check = DecontaminationCheck().run(ctx)
    paths = {p for p, _, _ in _decisive(check)}
    assert paths == {"logs/leak.eval!samples/arith-test-1_epoch_1.json"}, check.evidence
