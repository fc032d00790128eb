"""The scanner's readers for what a cheater hides data in: token ids (jsonl, json, parquet,
arrow, .pt, .npy, .npz) decoded with the base tokenizer, compressed files and archives (bounded),
and files whose names hide what they are. Each case shows the hidden text comes back as a line
naming its file (and member, row or tensor), or the file is listed with the reason."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest
import torch
import zstandard

from posttrainbench.integrity.archives import Budget
from posttrainbench.integrity.texts import Skipped, TextChunk, iter_texts
from posttrainbench.integrity.token_texts import TokenDecoder

SECRET = "Marisol bakes 48 cupcakes and sells them at the fair"


@pytest.fixture(scope="module")
def decoder() -> TokenDecoder:
    from posttrainbench.embedded import tiny_model

    return TokenDecoder(tiny_model.build_tokenizer().backend_tokenizer)


def _ids(decoder: TokenDecoder, text: str) -> list[int]:
    ids: list[int] = decoder._tok.encode(text).ids
    return ids


def _found(chunks: list[TextChunk], text: str = SECRET) -> dict[str, list[tuple[int, str]]]:
    """path → (line, label) of each line holding `text`."""
    out: dict[str, list[tuple[int, str]]] = {}
    for c in chunks:
        for i, line in enumerate(c.data.rstrip(b"\n").split(b"\n")):
            if text.encode() in line:
                label = c.labels[i] if c.labels else ""
                out.setdefault(c.path, []).append((c.first_line + i, label))
    return out


def test_token_ids_are_decoded_in_every_format(tmp_path: Path, decoder: TokenDecoder) -> None:
    ids = _ids(decoder, SECRET)
    labels = [-100] * 3 + ids[3:]
    other = _ids(decoder, "an honest sentence about apples")
    rows = [{"input_ids": other, "labels": other}, {"input_ids": ids, "labels": labels}]
    (tmp_path / "tok.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "tok.json").write_text(json.dumps({"data": rows}))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "tok.parquet")
    table = pa.Table.from_pylist(rows)
    with ipc.new_stream(tmp_path / "data-00000-of-00001.arrow", table.schema) as writer:
        writer.write_table(table)
    torch.save({"input_ids": torch.tensor([other[:5], ids[:5]])}, tmp_path / "short.pt")
    torch.save(
        {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels])}, tmp_path / "tok.pt"
    )
    np.save(tmp_path / "tok.npy", np.array([ids], dtype=np.int32))
    np.savez(tmp_path / "tok.npz", train=np.array(other + ids, dtype=np.uint16))
    skipped: list[Skipped] = []
    found = _found(list(iter_texts(tmp_path, decoder=decoder, skipped=skipped)))
    assert skipped == []
    assert found["tok.jsonl"] == [(2, "")]
    assert found["tok.json"] == [(2, "$.data[1]")]
    assert found["tok.parquet"] == [(2, "row 2")]
    assert found["data-00000-of-00001.arrow"] == [(2, "row 2")]
    assert found["tok.pt"] == [(1, "input_ids[0]")]  # the labels' row lacks the -100 prefix
    assert found["tok.npy"] == [(1, "[0]")]
    assert found["tok.npz"] == [(1, "train")]
    assert "short.pt" not in found
    # without the tokenizer, ids stay numbers: nothing is found
    assert _found(list(iter_texts(tmp_path))) == {}


def test_long_token_streams_are_cut_in_overlapping_windows(
    tmp_path: Path, decoder: TokenDecoder
) -> None:
    filler = _ids(decoder, "the copyright holders of this work " * 400)
    ids = _ids(decoder, SECRET)
    at = 2048 - 5  # the item falls across the first window's end
    stream = filler[:at] + ids + filler[: 4000 - at]
    np.save(tmp_path / "train.npy", np.array(stream, dtype=np.int64))
    found = _found(list(iter_texts(tmp_path, decoder=decoder)))
    assert [label for _, label in found["train.npy"]] == ["[1792:3840]"]


def test_pickles_and_object_arrays_are_never_loaded(tmp_path: Path, decoder: TokenDecoder) -> None:
    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("ran agent code",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"x": Payload()}))
    np.save(tmp_path / "obj.npy", np.array([{"text": SECRET}], dtype=object), allow_pickle=True)
    skipped: list[Skipped] = []
    assert list(iter_texts(tmp_path, decoder=decoder, skipped=skipped)) == []
    reasons = {s.path: s.reason for s in skipped}
    assert reasons["evil.pt"].startswith("a pickle weights_only refuses")
    assert reasons["obj.npy"].startswith("an object array")
    assert all(s.size > 0 for s in skipped)


def _records(text: str = SECRET) -> bytes:
    return (json.dumps({"text": "filler"}) + "\n" + json.dumps({"text": text}) + "\n").encode()


def test_compressed_files_and_archives_are_opened(tmp_path: Path) -> None:
    data = _records()
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "b.jsonl.bz2").write_bytes(bz2.compress(data))
    (tmp_path / "c.jsonl.xz").write_bytes(lzma.compress(data))
    (tmp_path / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    (tmp_path / "renamed.dat").write_bytes(gzip.compress(data))  # the name hides it
    (tmp_path / "weights.bin").write_bytes(gzip.compress(data))  # claims to be binary
    with zipfile.ZipFile(tmp_path / "pack.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("inner/train.jsonl", data)
        z.writestr("inner/more.json.gz", gzip.compress(json.dumps([{"t": SECRET}]).encode()))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("data/train.jsonl")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (tmp_path / "pack.tar.gz").write_bytes(buf.getvalue())
    skipped: list[Skipped] = []
    found = _found(list(iter_texts(tmp_path, skipped=skipped)))
    assert skipped == []
    assert found == {
        "a.jsonl.gz": [(2, "")],
        "b.jsonl.bz2": [(2, "")],
        "c.jsonl.xz": [(2, "")],
        "d.jsonl.zst": [(2, "")],
        "renamed.dat": [(2, "")],
        "weights.bin": [(2, "")],
        "pack.zip!inner/train.jsonl": [(2, "")],
        "pack.zip!inner/more.json.gz": [(1, "$[0]")],
        "pack.tar.gz!data/train.jsonl": [(2, "")],
    }


def test_caps_and_bombs_are_listed_not_read(tmp_path: Path) -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\n" * (256 << 20))  # 256 MiB in ~8 KB
    (tmp_path / "bomb.jsonl.zst").write_bytes(bomb)
    big = (json.dumps({"text": "x" * 200}) + "\n").encode() * 30_000  # ~6.5 MB
    (tmp_path / "big.jsonl.gz").write_bytes(gzip.compress(big, compresslevel=1))
    with zipfile.ZipFile(tmp_path / "zipbomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.txt", b"0" * (32 << 20))
    skipped: list[Skipped] = []
    budget = Budget(member_bytes=4 << 20)
    list(iter_texts(tmp_path, skipped=skipped, budget=budget))
    reasons = {s.path: s.reason for s in skipped}
    assert "a bomb" in reasons["bomb.jsonl.zst"], reasons
    assert "over 4 MiB" in reasons["big.jsonl.gz"], reasons
    assert "compression ratio" in reasons["zipbomb.zip"], reasons
    assert budget.used < 16 << 20  # stopped at the caps, never decompressed it all


def test_the_scan_wide_cap_stops_decompression(tmp_path: Path) -> None:
    data = (json.dumps({"text": "y" * 300}) + "\n").encode() * 5000  # ~1.5 MB each
    for i in range(4):
        (tmp_path / f"part{i}.jsonl.gz").write_bytes(gzip.compress(data, compresslevel=1))
    skipped: list[Skipped] = []
    budget = Budget(total_bytes=4 << 20)
    list(iter_texts(tmp_path, skipped=skipped, budget=budget))
    assert len(skipped) == 2  # the first two read fit the cap, the next two do not
    assert all("decompression cap" in s.reason for s in skipped)


def test_table_decoding_is_the_tokenizers_own(decoder: TokenDecoder) -> None:
    """The bulk byte-level decode gives what `decode_batch(skip_special_tokens=True)` gives,
    multi-byte characters and special tokens included."""
    texts = [SECRET, "Janet\u2019s ducks lay 16 eggs \u00e9\u00e8 \u4e2d\u6587", "", "x" * 50]
    seqs = [_ids(decoder, t) for t in texts]
    seqs[1] = [0, *seqs[1], 0]  # <|endoftext|>: special
    assert decoder._table is not None
    assert decoder.decode(seqs) == decoder._tok.decode_batch(seqs, skip_special_tokens=True)
