"""Decontamination throughput with reading, decompression and token decoding included, on one
core: the check's own readers (iter_texts) feeding the n-gram scan and the short-item matcher,
over the same synthetic English-like training records kept four ways — plain .jsonl, gzipped
.jsonl, a Parquet of `input_ids`, and .jsonl of `input_ids` and `labels` (the embedded ptb-tiny
tokenizer, decoded back).

python benchmarks/decontamination_throughput.py [--mb 100] [--entries 1000]

MB/s are of the text the records hold (the same for all three), per CPU second of this process
(tokenizers and numba are held to one thread), and of the bytes on disk.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # tokenizers' decode_batch: one core
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import argparse
import gzip
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from posttrainbench.integrity.archives import Budget
from posttrainbench.integrity.ngrams import NgramIndex
from posttrainbench.integrity.short_items import ShortItemIndex
from posttrainbench.integrity.texts import Skipped, iter_texts
from posttrainbench.integrity.token_texts import TokenDecoder


def _corpus(rng: np.random.Generator, mb: int, entries: int) -> tuple[list[str], list[str]]:
    """Lines of ~300 bytes of words drawn Zipf-like, and `entries` items of uniformly drawn
    words (as test items are: specific wording), a few of them planted among the lines."""
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = np.clip(rng.geometric(0.2, 5000), 2, 12)
    vocab = sorted({"".join(rng.choice(letters, n)) for n in lengths})
    vocab += [str(i) for i in range(300)] + ["the", "a", "of", "and", "what", "is", "+", "-"]
    words = np.array(vocab, dtype=object)
    ranks = np.minimum(rng.zipf(1.2, int(mb * 1e6 / 6)) - 1, len(words) - 1)
    drawn = words[ranks]
    lines = [" ".join(drawn[i : i + 50]) for i in range(0, len(drawn), 50)]
    items = [" ".join(rng.choice(words, int(rng.integers(20, 60)))) for _ in range(entries)]
    for k in rng.choice(entries, 5, replace=False):
        lines.insert(int(rng.integers(0, len(lines))), f"question: {items[int(k)]}")
    return lines, items


def _measure(name: str, root: Path, text_mb: float, scan: Callable[[Path], int]) -> None:
    disk_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
    wall, cpu = time.perf_counter(), time.process_time()
    hits = scan(root)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        f"{name:<22} {text_mb / cpu:7.1f} MB/s per core of text ({text_mb:.0f} MB text, "
        f"{disk_mb:.0f} MB on disk: {disk_mb / cpu:.1f} MB/s; {cpu:.1f} s CPU, {wall:.1f} s "
        f"wall); hits {hits}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--entries", type=int, default=1000)
    args = parser.parse_args()

    from posttrainbench.embedded import tiny_model

    decoder = TokenDecoder(tiny_model.build_tokenizer().backend_tokenizer)
    rng = np.random.default_rng(0)
    lines, texts = _corpus(rng, args.mb, args.entries)
    index = NgramIndex.build((f"item/{i}", text) for i, text in enumerate(texts))
    arith = [
        (f"{a}+{b}", (f"What is {a} + {b}?", str(a + b))) for a in range(30) for b in range(10)
    ]
    short = ShortItemIndex.build(arith, {k for k, _ in arith})
    text_mb = sum(len(line) + 1 for line in lines) / 1e6
    print(f"index: {len(index)} entries + {len(short)} short items; {len(lines):,} records")

    def scan(root: Path) -> int:
        hits = 0
        skipped: list[Skipped] = []
        for chunk in iter_texts(
            root, skipped=skipped, decoder=decoder, budget=Budget(total_bytes=16 << 30)
        ):
            hits += len(index.scan(chunk.data)) + len(short.scan(chunk.data, alone_counts=True))
        if skipped:
            raise SystemExit(f"skipped: {skipped}")
        return hits

    with tempfile.TemporaryDirectory() as tmp:
        records = "".join(json.dumps({"text": line}) + "\n" for line in lines).encode()
        plain = Path(tmp) / "plain"
        plain.mkdir()
        (plain / "train.jsonl").write_bytes(records)
        _measure("plain .jsonl", plain, text_mb, scan)
        (plain / "train.jsonl").unlink()

        packed = Path(tmp) / "gz"
        packed.mkdir()
        (packed / "train.jsonl.gz").write_bytes(gzip.compress(records, compresslevel=6))
        del records
        _measure("gzipped .jsonl", packed, text_mb, scan)
        (packed / "train.jsonl.gz").unlink()

        tokens = Path(tmp) / "tokens"
        tokens.mkdir()
        encoded = decoder._tok.encode_batch(lines)
        ids = pa.array([e.ids for e in encoded], type=pa.list_(pa.int32()))
        pq.write_table(pa.table({"input_ids": ids}), tokens / "train.parquet")
        _measure("token-id .parquet", tokens, text_mb, scan)
        (tokens / "train.parquet").unlink()
        with (tokens / "train.jsonl").open("w") as f:
            f.writelines(json.dumps({"input_ids": e.ids, "labels": e.ids}) + "\n" for e in encoded)
        del encoded, ids
        _measure("token-id .jsonl", tokens, text_mb, scan)


if __name__ == "__main__":
    main()
