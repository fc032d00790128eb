"""Time the provenance check (compare_weights) against just reading both checkpoints.

python benchmarks/provenance_speed.py --shape 1.7b [--dir /tmp/ptb-provenance] [--repeat 2]

Writes (or reuses) a random bf16 base and final = base + small noise with Qwen3 shapes, sharded
into ~5 GB files with an index json, one shard in memory at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from posttrainbench.integrity.weights import compare_weights

SHAPES = {
    # hidden, intermediate, layers, q heads, kv heads, head dim, vocab
    "tiny": (128, 512, 4, 4, 2, 32, 4096),
    "1.7b": (2048, 6144, 28, 16, 8, 128, 151936),
    "4b": (2560, 9728, 36, 32, 8, 128, 151936),
}
SHARD_BYTES = 5 * 10**9


def tensor_shapes(shape: str) -> list[tuple[str, list[int]]]:
    h, inter, layers, qh, kvh, hd, vocab = SHAPES[shape]
    out: list[tuple[str, list[int]]] = [("model.embed_tokens.weight", [vocab, h])]
    for i in range(layers):
        p = f"model.layers.{i}."
        out += [
            (p + "self_attn.q_proj.weight", [qh * hd, h]),
            (p + "self_attn.k_proj.weight", [kvh * hd, h]),
            (p + "self_attn.v_proj.weight", [kvh * hd, h]),
            (p + "self_attn.o_proj.weight", [h, qh * hd]),
            (p + "self_attn.q_norm.weight", [hd]),
            (p + "self_attn.k_norm.weight", [hd]),
            (p + "mlp.gate_proj.weight", [inter, h]),
            (p + "mlp.up_proj.weight", [inter, h]),
            (p + "mlp.down_proj.weight", [h, inter]),
            (p + "input_layernorm.weight", [h]),
            (p + "post_attention_layernorm.weight", [h]),
        ]
    out.append(("model.norm.weight", [h]))
    return out


def write_checkpoint(folder: Path, shape: str, noise: float) -> None:
    """Base weights from a per-tensor seed, so final (noise > 0) regenerates them shard by shard."""
    folder.mkdir(parents=True, exist_ok=True)
    specs = tensor_shapes(shape)
    groups: list[list[tuple[str, list[int]]]] = [[]]
    size = 0
    for name, shp in specs:
        nbytes = 2 * torch.Size(shp).numel()
        if groups[-1] and size + nbytes > SHARD_BYTES:
            groups.append([])
            size = 0
        groups[-1].append((name, shp))
        size += nbytes
    weight_map = {}
    for i, group in enumerate(groups, start=1):
        fname = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        shard = {}
        for name, shp in group:
            idx = specs.index((name, shp))
            if len(shp) == 1:
                shard[name] = torch.ones(shp, dtype=torch.bfloat16)
                continue
            g = torch.Generator().manual_seed(idx)
            t = torch.empty(shp, dtype=torch.float32).normal_(0.0, 0.02, generator=g)
            if noise:
                t.add_(torch.empty_like(t).normal_(0.0, 0.02 * noise))
            shard[name] = t.to(torch.bfloat16)
            del t
        save_file(shard, str(folder / fname), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, fname))
        del shard
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps({"shape": shape, "tie_word_embeddings": True}))


def read_all(folders: list[Path]) -> int:
    """Every tensor of every folder, materialised as float32 (what any comparison needs first)."""
    nbytes = 0
    for folder in folders:
        for shard in sorted(folder.glob("*.safetensors")):
            with safe_open(str(shard), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118
                    t = f.get_tensor(name)
                    nbytes += t.numel() * t.element_size()
                    t.float()
    return nbytes


def read_all_chunked(folders: list[Path], chunk: int = 1 << 20) -> int:
    """Every tensor cast to float32 chunk by chunk into one reused buffer: the cheapest read."""
    nbytes = 0
    buf = torch.empty(chunk, dtype=torch.float32)
    for folder in folders:
        for shard in sorted(folder.glob("*.safetensors")):
            with safe_open(str(shard), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118
                    t = f.get_tensor(name).reshape(-1)
                    nbytes += t.numel() * t.element_size()
                    for start in range(0, t.numel(), chunk):
                        part = t[start : start + chunk]
                        buf[: part.numel()].copy_(part)
    return nbytes


def evict(folders: list[Path]) -> None:
    """Drop the checkpoints from the page cache, so the next pass reads them from storage."""
    for folder in folders:
        for shard in folder.glob("*.safetensors"):
            fd = os.open(shard, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cold", action="store_true", help="evict the page cache before each pass")
    args = ap.parse_args()
    root = args.dir or Path(f"/tmp/ptb-provenance-{args.shape}")
    base, final = root / "base", root / "final"
    for folder, noise in ((base, 0.0), (final, 0.05)):
        if not (folder / "model.safetensors.index.json").is_file():
            t0 = time.monotonic()
            write_checkpoint(folder, args.shape, noise)
            print(f"wrote {folder} in {time.monotonic() - t0:.1f} s")
    print(f"torch threads: {torch.get_num_threads()}")
    read_s = cmp_s = chunked_s = 0.0
    nbytes = 0
    for i in range(args.repeat):
        if args.cold:
            evict([final, base])
        t0 = time.monotonic()
        cmp = compare_weights(final, base)
        cmp_s = time.monotonic() - t0
        if i == 0:
            print(f"  peak RSS after the first compare: {peak_rss_gb():.2f} GB")
        if args.cold:
            evict([final, base])
        t0 = time.monotonic()
        nbytes = read_all([final, base])
        read_s = time.monotonic() - t0
        if args.cold:
            evict([final, base])
        t0 = time.monotonic()
        read_all_chunked([final, base])
        chunked_s = time.monotonic() - t0
        print(
            f"  pass {i + 1}: compare {cmp_s:.2f} s, read (.float()) {read_s:.2f} s,"
            f" read (chunked cast) {chunked_s:.2f} s"
        )
    print(f"compare vs the chunked-cast read: {cmp_s / chunked_s:.2f}x")
    print(
        f"read both: {read_s:.1f} s ({nbytes / 1e9:.1f} GB, {nbytes / 1e9 / read_s:.2f} GB/s);"
        f" compare: {cmp_s:.1f} s = {cmp_s / read_s:.2f}x read; mean cos {cmp.mean_cos_base:.4f},"
        f" derived {cmp.derived_fraction:.2f}; peak RSS {peak_rss_gb():.2f} GB"
    )


if __name__ == "__main__":
    main()
