from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from posttrainbench.integrity.texts import NOT_TEXT, Skipped, TextChunk, iter_texts

ROWS = [
    {"question": "Marisol bakes 48 cupcakes.", "answer": "7", "tags": ["a", "b"]},
    {"question": "Odalys buys 7 notebooks.", "answer": "18", "tags": []},
]
ROWS_TEXT = [b"Marisol bakes 48 cupcakes. 7 a b", b"Odalys buys 7 notebooks. 18"]


def _lines(chunks: list[TextChunk], path: str) -> dict[int, bytes]:
    """Line number -> line, for one file, rebuilt from its chunks."""
    out: dict[int, bytes] = {}
    for chunk in chunks:
        if chunk.path == path:
            for i, line in enumerate(chunk.data.rstrip(b"\n").split(b"\n")):
                out[chunk.first_line + i] = line
    return out


def test_line_files_are_chunked_at_line_boundaries(tmp_path: Path) -> None:
    text = "".join(f"line {i} of the corpus\n" for i in range(1, 501))
    (tmp_path / "notes.txt").write_text(text)
    chunks = list(iter_texts(tmp_path, chunk_bytes=100))
    assert len(chunks) > 10
    assert all(c.data.endswith(b"\n") for c in chunks)
    lines = _lines(chunks, "notes.txt")
    assert len(lines) == 500
    assert all(lines[i] == f"line {i} of the corpus".encode() for i in lines)


def test_jsonl_escapes_do_not_glue_words(tmp_path: Path) -> None:
    records = [{"text": "first\nsecond\tthird"}, {"text": "Janet\u2019s ducks"}]
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    lines = _lines(list(iter_texts(tmp_path)), "data.jsonl")
    assert b"first second third" in lines[1]
    assert "Janet\u2019s ducks".encode() in lines[2]


def test_json_documents_become_one_line_per_record(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text(json.dumps(ROWS, indent=2))
    (tmp_path / "wrapped.json").write_text(json.dumps({"version": 1, "data": ROWS}))
    (tmp_path / "broken.json").write_text('{"a": "unterminated\nsecond line\n')
    chunks = list(iter_texts(tmp_path))
    assert _lines(chunks, "list.json") == {
        1: b"Marisol bakes 48 cupcakes. 7 a b",
        2: b"Odalys buys 7 notebooks. 18",
    }
    assert _lines(chunks, "wrapped.json") == {1: b"1", 2: ROWS_TEXT[0], 3: ROWS_TEXT[1]}
    assert _lines(chunks, "broken.json")[2] == b"second line"


def test_json_every_string_at_any_depth_with_its_path(tmp_path: Path) -> None:
    """Not only the largest list of records: every list of records, and every string beside
    them, each line labelled with its JSON path."""
    doc = {
        "meta": {"note": "hidden in a nested dict", "deeper": {"x": ["first", "second"]}},
        "train": ROWS,
        "test": [
            {"messages": [{"role": "user", "content": "Deep question"}, {"c": "Deep answer"}]}
        ],
    }
    (tmp_path / "doc.json").write_text(json.dumps(doc))
    chunks = [c for c in iter_texts(tmp_path) if c.path == "doc.json"]
    lines = _lines(chunks, "doc.json")
    labels = [label for c in chunks for label in c.labels or ()]
    by_label = dict(zip(labels, (lines[i + 1] for i in range(len(lines))), strict=True))
    assert by_label == {
        "$.meta": b"hidden in a nested dict",
        "$.meta.deeper": b"first second",
        "$.train[0]": ROWS_TEXT[0],
        "$.train[1]": ROWS_TEXT[1],
        "$.test[0]": b"user Deep question Deep answer",  # a conversation stays one record
    }


def test_parquet_rows_become_lines(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "train.parquet")
    lines = _lines(list(iter_texts(tmp_path)), "train.parquet")
    assert lines == {1: ROWS_TEXT[0], 2: ROWS_TEXT[1]}


def test_arrow_stream_and_file_formats_are_read(tmp_path: Path) -> None:
    table = pa.Table.from_pylist(ROWS)
    (tmp_path / "ds").mkdir()
    with ipc.new_stream(tmp_path / "ds" / "data-00000-of-00001.arrow", table.schema) as writer:
        writer.write_table(table)  # datasets.Dataset.save_to_disk layout
    with ipc.new_file(tmp_path / "file.arrow", table.schema) as writer:
        writer.write_table(table)
    chunks = list(iter_texts(tmp_path))
    for name in ("ds/data-00000-of-00001.arrow", "file.arrow"):
        assert _lines(chunks, name)[2] == ROWS_TEXT[1]


def test_exclude_symlinks_and_binaries(tmp_path: Path) -> None:
    (tmp_path / "keep.md").write_text("kept\n")
    (tmp_path / "README").write_text("no suffix but text\n")
    (tmp_path / "evaluate").mkdir()
    (tmp_path / "evaluate" / "items.jsonl").write_text('{"q": "secret"}\n')
    (tmp_path / "evaluated.txt").write_text("not under the excluded folder\n")
    (tmp_path / "model.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{}      " * 10)
    (tmp_path / "blob.dat").write_bytes(b"\x89PNG\0\0\x01\x02")
    (tmp_path / "link.txt").symlink_to(tmp_path / "keep.md")
    (tmp_path / "linkdir").symlink_to(tmp_path / "evaluate")
    skipped: list[Skipped] = []
    chunks = list(iter_texts(tmp_path, exclude=["evaluate/"], skipped=skipped))
    assert sorted(c.path for c in chunks) == ["README", "evaluated.txt", "keep.md"]
    assert sorted((s.path, s.reason) for s in skipped) == [
        ("blob.dat", NOT_TEXT),
        ("link.txt", "symlink"),
        ("linkdir", "symlink"),
        ("model.safetensors", "binary"),
    ]


def test_unreadable_file_is_skipped_with_its_error(tmp_path: Path) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"not a parquet file at all")
    skipped: list[Skipped] = []
    assert list(iter_texts(tmp_path, skipped=skipped)) == []
    assert [s.path for s in skipped] == ["bad.parquet"]
    assert skipped[0].reason
