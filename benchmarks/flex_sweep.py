"""The engine's flex decode attention alone, per kernel option set: time per layer and KV read
bandwidth on the batch shapes of a decode step (a batch's tail, a full batch, a long tail, a
GSM8K-like batch whose rows share their ten shots' pages).

Each option set compiles (CUDA graphs, as the engine's step) a function that builds the step's
block mask from the pool's page table (evaluate/paged_kv.decode_block_masks) and runs flex
attention over `--layers` layers of the pool; options the compiler refuses print its reason.
Outputs are compared with the first option set's (the kernel's choices must not change answers
beyond rounding). `"full_blocks": true` in a set is not the kernel's: the block mask lists the
pages inside each row's window as full (paged_kv.decode_block_masks).

    PYTHONPATH=src python benchmarks/flex_sweep.py --options '[{}, {"num_stages": 3}]'
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable

import torch

from posttrainbench.evaluate import paged_kv
from posttrainbench.evaluate.paged_kv import PagePool

# name: (rows running, tokens in each row's cache, leading pages every row shares)
WORKLOADS = {
    "tail": (30, 1100, 0),
    "long-tail": (8, 4500, 0),
    "gsm8k-like": (104, 1600, 6),
    "full": (256, 1100, 0),
}


def fill(pool: PagePool, rows: int, length: int, shared: int) -> torch.Tensor:
    """Every slot released, then `rows` slots holding `length` positions (the first `shared`
    pages shared by all); the positions each row's query sits at, on the device."""
    for slot in range(pool.slots):
        pool.release(slot)
    pool.free.sort(reverse=True)  # the same pages for the same rows each time: the same data
    for slot in range(rows):
        if shared and slot:
            pool.share(slot, pool.owned[0][:shared])
        if not pool.ensure(slot, length):
            raise SystemExit(f"the pool has too few pages for {rows} x {length}")
    pool.sync()
    positions = torch.zeros(pool.slots, dtype=torch.long)
    positions[:rows] = length - 1
    return positions.to(pool.device)


def step_fn(
    pool: PagePool, layers: int, options: dict[str, object]
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    kernel = dict(options)
    full = bool(kernel.pop("full_blocks", False))  # ours, not the kernel's

    def attend(q: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        mask = paged_kv.decode_block_masks(pool, positions, {None}, full)[None]
        outs = [
            flex_attention(
                q, pool.k[i], pool.v[i], block_mask=mask, enable_gqa=True,
                kernel_options=kernel or None,  # type: ignore[arg-type]
            )
            for i in range(layers)
        ]  # fmt: skip
        return torch.stack(outs)  # type: ignore[arg-type]

    for t in (*pool.k, *pool.v, pool.table, pool.logical):
        torch._dynamo.mark_static_address(t)
    cuda = pool.device.type == "cuda"
    return torch.compile(
        attend, mode="reduce-overhead" if cuda else None, dynamic=False, fullgraph=True
    )


def timed(fn: Callable[[], torch.Tensor], iters: int, cuda: bool) -> float:
    """Seconds per call, after two calls of warm-up."""
    for _ in range(2):
        fn()
    if cuda:
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3 / iters
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--options", type=json.loads, default=[{}], help="JSON list of option sets")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--attn", default="16,8,128", help="query heads, KV heads, head size (GPU)")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    # Qwen3-1.7B's attention on the GPU (gemma-3-4b: 8,4,256); a small one on CPU (a smoke
    # run: there flex ignores the kernel options)
    q_heads, kv_heads, dim = (int(x) for x in args.attn.split(",")) if cuda else (4, 2, 16)
    page, slots, scale = (128, 256, 1) if cuda else (16, 16, 16)
    dtype = torch.bfloat16 if cuda else torch.float32
    chosen = {name: WORKLOADS[name] for name in args.workloads.split(",")}
    need = max(min(r, slots) * math.ceil(n / scale / page) for r, n, _ in chosen.values())
    pool = PagePool(
        layers=args.layers, kv_heads=kv_heads, head_dim=dim, pages=need + 2, page_size=page,
        slots=slots, max_len=max(n for _, n, _ in chosen.values()) // scale + page,
        dtype=dtype, device=device,
    )  # fmt: skip
    for t in (*pool.k, *pool.v):
        t.normal_()
    q = torch.randn(slots, q_heads, 1, dim, dtype=dtype, device=device)
    if cuda:
        print(f"device {torch.cuda.get_device_name()} torch {torch.__version__}")
    per_pos = 2 * kv_heads * dim * dtype.itemsize  # K and V of one position, one layer
    first: dict[str, torch.Tensor] = {}
    for options in args.options:
        torch._dynamo.reset()
        fn = step_fn(pool, args.layers, options)
        for name, (rows, length, shared) in chosen.items():
            rows, length = min(rows, slots), length // scale
            positions = fill(pool, rows, length, shared)
            t = time.perf_counter()
            try:
                out = fn(q, positions).clone()
            except Exception as exc:  # the compiler refused these options: its reason
                print(f"{json.dumps(options)}: REFUSED {type(exc).__name__}: {exc}"[:600])
                break
            compile_s = time.perf_counter() - t
            per_call = timed(lambda fn=fn, positions=positions: fn(q, positions), args.iters, cuda)
            layer = per_call / args.layers
            read = rows * length * per_pos
            distinct = (rows * (length - shared * page) + shared * page) * per_pos
            diff = (out[:, :rows].float() - first.setdefault(name, out)[:, :rows].float()).abs()
            print(
                f"{json.dumps(options):48s} {name:11s} {rows:3d} x {length:5d}: "
                f"{layer * 1e6:7.1f} us/layer, {read / layer / 1e12:5.2f} TB/s per row's KV "
                f"({distinct / layer / 1e12:5.2f} distinct); max diff {diff.max().item():.1e}"
                + (f"; first call {compile_s:.1f} s" if name == next(iter(chosen)) else "")
            )


if __name__ == "__main__":
    main()
