"""Throughput of the continuous-batching engine (evaluate/engine.py) on a GSM8K-shaped workload.

A model of the chosen shape with random bf16 weights (no download), N prompts of 10-shot GSM8K
length (~900 tokens) and heavy-tailed output lengths (lognormal, median ~200, p99 ~4,000, capped
at 4,000; each request stops at its drawn length, since random weights never emit EOS on cue).
Prints generated tokens/s and wall time for the engine, and for `generate` with a static cache at
a fixed batch (left-padded, every batch runs to its longest output) on the first `--gen-batch`
requests; the engine's fraction of the memory-bandwidth roofline (weights + live KV read once per
decode step, at the measured copy bandwidth); the time in prefill passes; and, on `--agree`
requests, the greedy tokens equal to `generate`'s up to the first divergence, and every greedy
step against the plain forward pass on the same context (bf16 on the GPU).

    PYTHONPATH=src python benchmarks/eval_engine.py --n 256 --slots 64
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
import transformers

from posttrainbench.evaluate.engine import Engine, Request

SHAPES = {
    "qwen3-1.7b": dict(
        hidden_size=2048,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=6144,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen3-4b": dict(
        hidden_size=2560,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=9728,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "gemma-3-4b": dict(
        family="gemma3",
        hidden_size=2560,
        num_hidden_layers=34,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=256,
        intermediate_size=10240,
        vocab_size=262208,
        sliding_window=1024,
        query_pre_attn_scalar=256,
        layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 5
        + ["sliding_attention"] * 4,
    ),
    "tiny": dict(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        intermediate_size=128,
        vocab_size=1000,
        tie_word_embeddings=True,
    ),
}


def workload(
    n: int,
    seed: int,
    max_out: int,
    prompt_mean: int,
    vocab: int,
    shared: int = 0,
    fixed_out: int = 0,
) -> list[Request]:
    """`shared` leading tokens are the same in every prompt (GSM8K's ten shots: the same for
    every item and every seed); the rest of each prompt is its own. `fixed_out`: every request
    generates that many tokens (uniform lengths, as servers' throughput benchmarks use)."""
    g = torch.Generator().manual_seed(seed)
    sigma = math.log(4000 / 200) / 2.326  # median 200, p99 4,000
    prefix = torch.randint(10, vocab, (shared,), generator=torch.Generator().manual_seed(7))
    own_mean = prompt_mean - shared
    reqs = []
    for _ in range(n):
        spread = own_mean / 3 if shared else own_mean / 12
        plen = max(8, int(torch.normal(float(own_mean), spread, (1,), generator=g).item()))
        z = torch.randn(1, generator=g).item()
        out = fixed_out or max(1, min(max_out, round(200 * math.exp(sigma * z))))
        ids = prefix.tolist() + torch.randint(10, vocab, (plen,), generator=g).tolist()
        reqs.append(Request(ids, out))
    return reqs


# GSM8K's prompt: the ten shots (~830 tokens, the same for every item) and the question
GSM8K_SHOTS = 830
# v1.2: (benchmark, items, seeds when the model samples, mean prompt tokens, shared leading
# tokens); the evaluation runs each (benchmark, seed) as its own inspect evaluation, in turn
V12 = (
    ("aime2025", 30, 5, 150, 0),
    ("arenahardwriting", 250, 1, 400, 0),
    ("gpqamain", 448, 5, 300, 0),
    ("gsm8k", 1319, 5, 900, GSM8K_SHOTS),
    ("healthbench", 245, 1, 1000, 0),
    ("humaneval", 164, 5, 200, 0),
)
SAMPLING = dict(temperature=0.7, top_p=0.8, top_k=20)  # a typical instruct generation config


def build(shape: str, device: torch.device, dtype: torch.dtype) -> tuple[object, object]:
    fields = dict(SHAPES[shape])
    if fields.pop("family", "qwen3") == "gemma3":
        config = transformers.Gemma3TextConfig(**fields, max_position_embeddings=32768)
        cls = transformers.Gemma3ForCausalLM
    else:
        config = transformers.Qwen3Config(**fields, max_position_embeddings=40960)
        cls = transformers.Qwen3ForCausalLM
    with torch.device(device):
        model = cls(config).to(dtype).eval()
    return model, config


def run_v12(model: object, config: object, args: argparse.Namespace, kv_per_pos: int) -> None:
    """A whole v1.2 evaluation's generation, sampled: benchmark by benchmark, its seeds together
    in one batch as the harness runs them with the engine (run.run_tasks), or with
    --seeds-in-turn each (benchmark, seed) alone, as the `hf` path runs them."""
    vocab = config.vocab_size
    groups: list[tuple[str, str, list[Request]]] = []
    for b, (name, items, seeds, plen, shared) in enumerate(V12):
        if args.only and name not in args.only:
            continue
        runs = []
        for seed in range(seeds):
            reqs = workload(items, 1000 * b + seed, args.max_out, plen, vocab, shared)
            runs.append(
                [
                    Request(r.prompt_ids, r.max_new_tokens, seed=1000 * seed + i, **SAMPLING)
                    for i, r in enumerate(reqs)
                ]
            )
        if args.seeds_in_turn:
            groups += [(name, f"seed {i}", reqs) for i, reqs in enumerate(runs)]
        else:
            groups.append((name, f"{seeds} seeds", [r for reqs in runs for r in reqs]))
    max_len = max(len(r.prompt_ids) + r.max_new_tokens for _, _, g in groups for r in g)
    t0 = time.perf_counter()
    engine = make_engine(model, args, max_len)
    engine.generate([Request(groups[0][2][0].prompt_ids[:64], 16, seed=1, **SAMPLING)])
    sync()
    setup = time.perf_counter() - t0
    how = "each seed alone" if args.seeds_in_turn else "a benchmark's seeds together"
    print(
        f"v1.2: {len(groups)} batches ({how}), {sum(len(g) for _, _, g in groups)} requests; "
        f"engine set-up + compile {setup:.1f} s; KV pool {engine.pool.pages} pages"
    )
    total_tokens = 0
    clock = PrefillClock(engine)
    t = time.perf_counter()
    per: dict[str, list[float]] = {}
    for name, label, reqs in groups:
        s0 = time.perf_counter()
        steps0 = engine.stats.decode_steps
        pre0 = clock.seconds()
        got = engine.generate(reqs)
        sync()
        n = sum(len(x) for x in got)
        total_tokens += n
        per.setdefault(name, [0.0, 0])
        per[name][0] += time.perf_counter() - s0
        per[name][1] += n
        print(
            f"  {name} {label}: {len(reqs)} requests, {n:,} tokens (longest "
            f"{max(len(x) for x in got):,}) in {engine.stats.decode_steps - steps0:,} steps, "
            f"{time.perf_counter() - s0:.1f} s (prefill {clock.seconds() - pre0:.1f} s); "
            f"{total_tokens:,} tokens in "
            f"{time.perf_counter() - t:.1f} s so far",
            flush=True,
        )
    wall = time.perf_counter() - t
    for name, (w, n) in per.items():
        print(f"  {name:18s} {n:>10,} tokens {w:7.1f} s  {n / w:>8,.0f} tok/s")
    print(
        f"V1.2 WHOLE: {total_tokens:,} generated tokens in {wall:.1f} s ({wall / 60:.1f} min) "
        f"= {total_tokens / wall:,.0f} tok/s; with set-up {(wall + setup) / 60:.1f} min; "
        f"prefill {clock.seconds():.1f} s of it"
    )


def steps_by_rows(active: list[int], slots: int) -> str:
    """How many decode steps ran at most 8, 16, 32 … `slots` rows: the tail's share of steps."""
    bounds = [b for b in (8, 16, 32, 64, 128, 192, 256, 512) if b < slots] + [slots]
    counts = dict.fromkeys(bounds, 0)
    for n in active:
        counts[next(b for b in bounds if n <= b)] += 1
    return ", ".join(f"<= {b}: {c}" for b, c in counts.items())


def make_engine(model: object, args: argparse.Namespace, max_len: int) -> Engine:
    engine = Engine(
        model,
        slots=args.slots,
        max_len=max_len,
        compile_decode=not args.eager,
        share_prefixes=not args.no_share,
        flex_options=args.flex_options,
        full_blocks=args.full_blocks,
    )
    engine.on_compile_failure = lambda reason: print(f"COMPILE FAILED: {reason}")
    return engine


def add_flex_option(ap: argparse.ArgumentParser) -> None:
    """--flex-options: the flex decode kernel's options (Engine(flex_options=...), by default
    the engine's FLEX_OPTIONS, '{}' torch's own); --partial-blocks: Engine(full_blocks=False)."""
    ap.add_argument(
        "--flex-options", type=json.loads, default=None, help="e.g. '{\"SPLIT_KV\": 4}'"
    )
    ap.add_argument(
        "--partial-blocks", dest="full_blocks", action="store_false", help="mask on every page"
    )


class PrefillClock:
    """The time an engine spends in prefill passes: CUDA events around each pass on a GPU (no
    host sync, so the decode step in flight runs on as in an untimed run), wall time on CPU."""

    def __init__(self, engine: Engine) -> None:
        self.passes: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.host = 0.0
        real = engine._prefill
        cuda = engine.device.type == "cuda"

        def timed(group: list) -> None:
            if not cuda:
                start = time.perf_counter()
                real(group)
                self.host += time.perf_counter() - start
                return
            begin, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            begin.record()
            real(group)
            end.record()
            self.passes.append((begin, end))

        engine._prefill = timed  # type: ignore[method-assign]

    def seconds(self) -> float:
        """After a sync: the prefill time so far."""
        return self.host + sum(b.elapsed_time(e) for b, e in self.passes) / 1e3


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a device-to-device copy (read + write counted)."""
    x = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    sync()
    t = time.perf_counter()
    reps = 20
    for _ in range(reps):
        y.copy_(x)
    sync()
    return 2 * x.numel() * reps / (time.perf_counter() - t)


def run_generate(model, reqs: list[Request], device: torch.device) -> tuple[float, int, int]:
    """Wall seconds, useful tokens and computed tokens of one left-padded static-cache batch."""
    longest = max(len(r.prompt_ids) for r in reqs)
    new = max(r.max_new_tokens for r in reqs)
    ids = torch.zeros((len(reqs), longest), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(reqs):
        ids[i, longest - len(r.prompt_ids) :] = torch.tensor(list(r.prompt_ids))
        mask[i, longest - len(r.prompt_ids) :] = 1
    sync()
    t = time.perf_counter()
    with torch.no_grad():
        model.generate(
            ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            cache_implementation="static",
        )
    sync()
    return time.perf_counter() - t, sum(r.max_new_tokens for r in reqs), new * len(reqs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="qwen3-1.7b", choices=sorted(SHAPES))
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--slots", type=int, default=64)
    ap.add_argument("--max-out", type=int, default=4000)
    ap.add_argument("--fixed-out", type=int, default=0, help="uniform output lengths instead")
    ap.add_argument("--prompt-mean", type=int, default=900)
    ap.add_argument("--shared-prefix", type=int, default=GSM8K_SHOTS, help="0: no shared start")
    ap.add_argument("--no-share", action="store_true", help="engine computes shared starts anew")
    ap.add_argument("--gen-batch", type=int, default=64, help="0: skip the generate baseline")
    ap.add_argument("--agree", type=int, default=4, help="requests compared with generate")
    ap.add_argument("--eager", action="store_true", help="no compiled decode step (CUDA)")
    ap.add_argument("--seed", type=int, default=0)
    add_flex_option(ap)
    ap.add_argument("--workload", default="gsm8k", choices=("gsm8k", "v1.2"))
    ap.add_argument(
        "--seeds-in-turn", action="store_true", help="v1.2: each seed alone (as the hf path)"
    )
    ap.add_argument(
        "--only",
        type=lambda s: set(s.split(",")),
        default=None,
        help="v1.2: these benchmarks only (comma-separated), e.g. a whole run in two parts",
    )
    args = ap.parse_args()
    if unknown := (args.only or set()) - {b[0] for b in V12}:
        ap.error(f"--only: no v1.2 benchmark {sorted(unknown)}")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}", end=" ")
    print(f"torch {torch.__version__} transformers {transformers.__version__}")
    torch.manual_seed(args.seed)
    model, config = build(args.shape, device, dtype)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    kv_per_pos = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim
    kv_per_pos *= torch.finfo(dtype).bits // 8

    if args.workload == "v1.2":
        run_v12(model, config, args, kv_per_pos)
        return
    reqs = workload(
        args.n, args.seed, args.max_out, args.prompt_mean, config.vocab_size, args.shared_prefix,
        args.fixed_out,
    )  # fmt: skip
    max_len = max(len(r.prompt_ids) + r.max_new_tokens for r in reqs)
    outs = sorted(r.max_new_tokens for r in reqs)
    print(
        f"shape {args.shape} weights {weight_bytes / 1e9:.2f} GB; n {args.n}, "
        f"prompt mean {sum(len(r.prompt_ids) for r in reqs) / len(reqs):.0f} "
        f"({args.shared_prefix} shared), "
        f"output median {outs[len(outs) // 2]} p99 {outs[int(0.99 * (len(outs) - 1))]} "
        f"max {outs[-1]} total {sum(outs)}; slots {args.slots} x {max_len} positions "
        f"= {args.slots * max_len * kv_per_pos / 1e9:.1f} GB of KV"
    )
    bw = copy_bandwidth(device) if device.type == "cuda" else 20e9
    print(f"copy bandwidth {bw / 1e12:.2f} TB/s")

    engine = make_engine(model, args, max_len)
    pool = engine.pool
    print(
        f"KV pool {pool.pages} pages of {pool.page_size} "
        f"= {pool.pages * pool.page_size * kv_per_pos / 1e9:.1f} GB; compiled {engine.compiled}"
    )
    warm = [Request(r.prompt_ids[:64], 16) for r in reqs[: min(args.slots, 8)]]
    t = time.perf_counter()
    engine.generate(warm)
    sync()
    print(f"engine warm-up {time.perf_counter() - t:.1f} s")
    engine.stats = type(engine.stats)()
    clock = PrefillClock(engine)
    sync()
    t = time.perf_counter()
    got = engine.generate(reqs)
    sync()
    wall = time.perf_counter() - t
    st = engine.stats
    produced = sum(len(g) for g in got)
    assert produced == sum(outs), (produced, sum(outs))
    roof = sum(weight_bytes + kv * kv_per_pos for kv in st.live_kv_positions) / bw
    # the same with a page shared by many rows read once (an upper bound: whole pages)
    page_bytes = engine.pool.page_size * kv_per_pos
    roof_unique = sum(weight_bytes + n * page_bytes for n in st.held_pages) / bw
    mean_active = sum(st.active_per_step) / max(1, len(st.active_per_step))
    print(
        f"ENGINE{' (compiled)' if engine.compiled else ''}: {produced} tokens in {wall:.1f} s = "
        f"{produced / wall:,.0f} generated tok/s; {st.decode_steps} decode steps, "
        f"mean active {mean_active:.1f}, {wall / max(1, st.decode_steps) * 1e3:.2f} ms/step "
        f"(incl. prefill of {st.prefill_tokens} tokens in {st.prefill_passes} passes, "
        f"{st.preemptions} preemptions); roofline {roof:.1f} s -> "
        f"{100 * roof / wall:.1f} % of roofline end to end (every row's KV); shared prompt "
        f"tokens {st.shared_tokens}; reading shared pages once: roofline {roof_unique:.1f} s -> "
        f"{100 * roof_unique / wall:.1f} %"
    )
    print(f"steps by rows running: {steps_by_rows(st.active_per_step, args.slots)}")
    pre = clock.seconds()
    print(
        f"PREFILL {pre:.1f} s of the {wall:.1f} s ({st.prefill_tokens / max(pre, 1e-9):,.0f} "
        f"tok/s); the decode steps' {wall - pre:.1f} s against their roofline {roof:.1f} s: "
        f"{100 * roof / max(wall - pre, 1e-9):.1f} %"
    )
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else 0.0
    print(f"peak GPU memory {peak:.1f} GB")
    # before generate allocates its own: the pool and slot state, then the CUDA graph trees'
    # private pool (the H100 run with only `del engine`: generate out of memory)
    engine.close()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        print(f"GPU memory after the engine: {torch.cuda.memory_allocated() / 1e9:.1f} GB")

    if args.gen_batch:
        batch = reqs[: args.gen_batch]
        w, useful, computed = run_generate(model, batch, device)
        print(
            f"GENERATE static cache, batch {len(batch)}: {useful} useful tokens "
            f"({computed} computed) in {w:.1f} s = {useful / w:,.0f} generated tok/s "
            f"({computed / w:,.0f} incl. padding)"
        )

    if args.agree:
        # the engine's own greedy tokens from the batched run above against `generate` alone
        same = total = 0
        for r, mine in zip(reqs[: args.agree], got, strict=False):
            new = min(64, r.max_new_tokens)
            with torch.no_grad():
                ref = model.generate(
                    torch.tensor([list(r.prompt_ids)], device=device),
                    max_new_tokens=new,
                    min_new_tokens=new,
                    do_sample=False,
                )[0, len(r.prompt_ids) :].tolist()
            # tokens agree up to the first divergence (after it the contexts differ)
            k = next((i for i, (a, b) in enumerate(zip(mine, ref, strict=False)) if a != b), new)
            same += k
            total += new
        print(
            f"AGREEMENT of the batched engine with generate ({dtype}): "
            f"{same}/{total} greedy tokens before the first divergence"
        )
        teacher_forced(model, reqs[: args.agree], got, device)


def teacher_forced(
    model: torch.nn.Module, reqs: list[Request], got: list[list[int]], device: torch.device
) -> None:
    """Each of the engine's greedy tokens against the argmax of the model's plain forward pass on
    the same context (the engine's own tokens before it): a divergence above ends the comparison
    there, this counts every step. Where they differ, how far the forward's best logit leads the
    engine's pick, beside the logits' spread: near-ties are bf16 rounding, not a wrong step."""
    same = total = 0
    leads: list[float] = []
    spread = 0.0
    for r, mine in zip(reqs, got, strict=False):
        mine = mine[:1024]
        ids = torch.tensor([list(r.prompt_ids) + mine[:-1]], device=device)
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(r.prompt_ids) - 1 :].float()
        picked = torch.tensor(mine, device=device)
        best = logits.argmax(-1)
        same += int((best == picked).sum())
        total += len(mine)
        lead = logits.max(-1).values - logits.gather(1, picked[:, None])[:, 0]
        leads += lead[best != picked].tolist()
        spread = max(spread, float(logits.std(-1).mean()))
        del logits
    leads.sort()
    where = (
        f"; where not, the forward's best logit leads by median {leads[len(leads) // 2]:.4f}, "
        f"max {leads[-1]:.4f} (logits' std {spread:.3f})"
        if leads
        else ""
    )
    print(
        f"TEACHER-FORCED: {same}/{total} of the engine's greedy tokens are the plain forward "
        f"pass's argmax on the same context{where}"
    )


if __name__ == "__main__":
    main()
