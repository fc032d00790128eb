"""Throughput of the decontamination scanner, single-threaded: an index of ~1,000 synthetic items
against synthetic English-like training text (lines of ~300 bytes) with a few planted items;
figures for `scan` alone and for `iter_texts` + `scan` over the same text in .jsonl files.

python benchmarks/decontam_speed.py [--mb 200] [--entries 1000] [--plant 5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from posttrainbench.integrity.ngrams import NgramIndex
from posttrainbench.integrity.texts import iter_texts

FILE_MB = 64


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = np.clip(rng.geometric(0.2, size), 2, 14)
    words = {"".join(rng.choice(letters, n)) for n in lengths}
    words |= {str(i) for i in range(300)}
    words |= {"the", "a", "of", "and", "to", "is", "how", "many", "in", "for"}
    return sorted(words)


def _text(rng: np.random.Generator, vocab: np.ndarray, mb: int) -> bytes:
    """About mb MB of lines of ~300 bytes, words drawn Zipf-like from vocab."""
    lengths = np.array([len(w) + 1 for w in vocab])
    sample = np.minimum(rng.zipf(1.2, 100_000) - 1, len(vocab) - 1)
    n_words = int(mb * 1e6 / lengths[sample].mean())
    ranks = np.minimum(rng.zipf(1.2, n_words) - 1, len(vocab) - 1)
    words = vocab[ranks]
    per_line = 40
    lines = [" ".join(words[i : i + per_line]) for i in range(0, n_words, per_line)]
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--plant", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    vocab = np.array(_vocabulary(rng, 5000), dtype=object)
    items = [
        (f"item/{i}", " ".join(rng.choice(vocab, rng.integers(20, 60))))
        for i in range(args.entries)
    ]
    t0 = time.perf_counter()
    index = NgramIndex.build(items)
    build_s = time.perf_counter() - t0
    print(f"index: {len(index)} entries, {len(index.hashes)} n-grams, built in {build_s:.2f} s")

    data = bytearray(_text(rng, vocab, args.mb))
    planted = [items[int(i)] for i in rng.choice(len(items), args.plant, replace=False)]
    for _, text in planted:
        at = data.find(b"\n", int(rng.integers(0, len(data) - 1000))) + 1
        data[at:at] = f"question: {text} answer follows\n".encode()
    data = bytes(data)
    size_mb = len(data) / 1e6

    t0 = time.perf_counter()
    hits = index.scan(data)
    scan_s = time.perf_counter() - t0
    found = {h.key for h in hits} & {key for key, _ in planted}
    print(
        f"scan: {size_mb / scan_s:.0f} MB/s per core ({size_mb:.0f} MB in {scan_s:.2f} s); "
        f"hits: {args.plant} planted, {len(found)} found, {len(hits)} reported"
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        step = FILE_MB << 20
        for i, start in enumerate(range(0, len(data), step)):
            end = data.find(b"\n", start + step) + 1 or len(data)
            if start >= end:
                break
            lines = data[start:end].decode().splitlines()
            with (root / f"part{i}.jsonl").open("w") as f:
                f.writelines(json.dumps({"text": line}) + "\n" for line in lines)
        total_mb = sum(p.stat().st_size for p in root.iterdir()) / 1e6
        t0 = time.perf_counter()
        n_hits = 0
        for chunk in iter_texts(root):
            n_hits += len(index.scan(chunk.data))
        both_s = time.perf_counter() - t0
    print(
        f"read+scan: {total_mb / both_s:.0f} MB/s per core ({total_mb:.0f} MB of .jsonl in "
        f"{both_s:.2f} s); hits: {n_hits}"
    )


if __name__ == "__main__":
    main()
