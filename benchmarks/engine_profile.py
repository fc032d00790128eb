"""Where a decode step of the engine spends its time, on a full batch of equal-length sequences.

Fills every slot (or `--active` of them: a batch's tail) with a prompt of `--prompt` tokens,
then times `--steps` decode steps: the model's forward (compiled flex or eager gathered pages),
the sampler and the host's bookkeeping; prints the compiler's recompile and CUDA-graph-skip
counters and, with `--trace N`, the kernels of N more steps.

    PYTHONPATH=src python benchmarks/engine_profile.py --slots 128 --prompt 1024
"""

from __future__ import annotations

import argparse
import time

import torch

from posttrainbench.evaluate.engine import Engine, Request


def main() -> None:
    import sys

    sys.path.insert(0, "benchmarks")
    from eval_engine import SAMPLING, add_flex_option, build, sync

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="qwen3-1.7b")
    ap.add_argument("--slots", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--active", type=int, default=0, help="sequences running (0: every slot)")
    ap.add_argument("--eager", action="store_true")
    ap.add_argument("--trace", type=int, default=0, help="steps to profile: top kernels")
    ap.add_argument("--sample", action="store_true", help="v1.2's sampling rules, not greedy")
    ap.add_argument("--page", type=int, default=None, help="KV page size (CUDA default 128)")
    add_flex_option(ap)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, config = build(args.shape, device, dtype)
    max_len = args.prompt + 2 * args.steps + args.trace + 64
    t = time.perf_counter()
    eng = Engine(
        model, slots=args.slots, max_len=max_len, compile_decode=not args.eager,
        page_size=args.page, flex_options=args.flex_options, full_blocks=args.full_blocks,
    )  # fmt: skip
    eng.on_compile_failure = lambda reason: print(f"COMPILE FAILED: {reason}")
    g = torch.Generator().manual_seed(0)
    rules = dict(SAMPLING, seed=1) if args.sample else {}
    reqs = [
        Request(
            torch.randint(10, config.vocab_size, (args.prompt,), generator=g).tolist(),
            10**6,
            **rules,
        )
        for _ in range(args.active or args.slots)
    ]
    for i, r in enumerate(reqs):
        eng.submit(i, r)
    timings = {"decode": 0.0, "sample+host": 0.0}
    real_decode = eng._decode

    def timed(ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        sync()
        s = time.perf_counter()
        out = real_decode(ids, pos)
        sync()
        timings["decode"] += time.perf_counter() - s
        return out

    eng._decode = timed
    # admit everything (prefill passes interleave with decode steps until the slots are full)
    with eng.attention():
        s = time.perf_counter()
        while eng._waiting:
            eng._admit()
        sync()
        prefill = time.perf_counter() - s
    print(
        f"prefill {eng.stats.prefill_tokens} tokens in {eng.stats.prefill_passes} passes: "
        f"{prefill:.2f} s = {eng.stats.prefill_tokens / prefill:,.0f} tok/s"
    )
    eng.iterate()  # first step: compile / capture
    sync()
    print(f"set-up incl. first step {time.perf_counter() - t:.1f} s")
    timings["decode"] = 0.0
    s = time.perf_counter()
    for _ in range(args.steps):
        eng.iterate()
    sync()
    wall = time.perf_counter() - s
    host = wall - timings["decode"]
    active = len(reqs)
    kv = active * (args.prompt + args.steps // 2)
    per_pos = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 2
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    roof = (weights + kv * per_pos) / 3.0e12
    print(
        f"{args.steps} steps x {args.slots} slots ({active} running, "
        f"{'sampled' if args.sample else 'greedy'}): "
        f"{wall / args.steps * 1e3:.2f} ms/step "
        f"(decode {timings['decode'] / args.steps * 1e3:.2f}, rest {host / args.steps * 1e3:.2f}); "
        f"{active * args.steps / wall:,.0f} tok/s; roofline {roof * 1e3:.2f} ms/step at 3 TB/s"
    )
    # the same steps untimed: the host's work on one step overlaps the next step on the device
    eng._decode = real_decode
    s = time.perf_counter()
    for _ in range(args.steps):
        eng.iterate()
    sync()
    overlapped = time.perf_counter() - s
    per = overlapped / args.steps
    print(
        f"{args.steps} more steps, nothing timed in between (a step in flight): "
        f"{per * 1e3:.2f} ms/step; {active / per:,.0f} tok/s"
    )
    if args.trace:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            for _ in range(args.trace):
                eng.iterate()
            sync()
        key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=25, max_name_column_width=60))
        # where the host's own time goes (guards, graph replay, bookkeeping), per step
        print(f"HOST: self CPU time over {args.trace} steps")
        print(
            prof.key_averages().table(
                sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=60
            )
        )
    from torch._dynamo.utils import counters

    for key in ("stats", "inductor", "graph_break"):
        if counters.get(key):
            print(key, dict(counters[key]))


if __name__ == "__main__":
    main()
