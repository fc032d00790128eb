"""Generation throughput of an evaluation backend (`hf`, `engine`) on a GSM8K-sized workload,
through the harness's own path, against the memory-bandwidth roofline of the GPU.

    # 1. here (CPU): write a GSM8K-shaped test set (1,319 synthetic items, 10-shot prompts,
    #    upstream schema) as a hub-cache snapshot the real gsm8k loader reads, targets and all
    python benchmarks/eval_throughput.py make-data DIR
    # 2. on the GPU machine: build a Qwen3-1.7B-shaped model (random bf16 weights) and evaluate
    python benchmarks/eval_throughput.py run DIR [--backend hf|engine] [--stock] [--limit N]
        [--batch-size B] [--max-tokens T]

`run` goes through `evaluate_model` (the harness's own path: family template, neutral generation
config, inspect-ai's transformers provider or the engine). `--stock` runs inspect with its own
display and realtime log (run.INSPECT_SETTINGS left out): the free settings' gain. Random
weights never emit end-of-turn, so every item generates exactly max_tokens tokens. The roofline
assumes each decode step reads the weights once and the KV cache of the whole batch once, at
--bandwidth bytes/s (default: the GPU's copy bandwidth, measured as eval_engine.py does).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

# Qwen3-1.7B's shape (config.json of Qwen/Qwen3-1.7B-Base).
QWEN3_1_7B = dict(
    hidden_size=2048,
    intermediate_size=6144,
    num_hidden_layers=28,
    num_attention_heads=16,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=151936,
    max_position_embeddings=40960,
    rope_theta=1000000.0,
    tie_word_embeddings=True,
)
NAMES = ["Natalia", "Weng", "Betty", "Julie", "James", "Mark", "Albert", "Ken", "Alexis", "Tina"]
THINGS = ["clips", "apples", "pages", "dollars", "cookies", "marbles", "books", "eggs"]


def _problem(rng: random.Random) -> tuple[str, str]:
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    a, b, c = rng.randint(2, 90), rng.randint(2, 40), rng.randint(2, 9)
    q = (
        f"{name} sold {a} {thing} to her friends in April, and then she sold {b} more {thing} "
        f"than that in May. Each of the {thing} was packed in boxes of {c}, and every box cost "
        f"her {c + 1} dollars to ship. How many {thing} did {name} sell altogether in April and "
        "May, and how many dollars did shipping the full boxes cost her?"
    )
    total = a + (a + b)
    ans = f"In May she sold {a}+{b} = <<{a}+{b}={a + b}>>{a + b} {thing}.\n"
    ans += (
        f"Altogether she sold {a}+{a + b} = <<{a}+{a + b}={total}>>{total} {thing}.\n#### {total}"
    )
    return q, ans


def make_data(dest: Path) -> None:
    """GSM8K's upstream schema (1,319 test, 7,473 train items) as a hub-cache snapshot in `dest`
    (an HF_HOME), which the real gsm8k benchmark loads, targets and all."""
    _importable()
    from posttrainbench.catalog import BENCHMARKS
    from tests.fixtures.hub import hf_home, write_snapshot

    rng = random.Random(0)
    test = [dict(zip(("question", "answer"), _problem(rng), strict=True)) for _ in range(1319)]
    train = [dict(zip(("question", "answer"), _problem(rng), strict=True)) for _ in range(7473)]
    with hf_home(dest):
        write_snapshot(
            dest,
            "openai/gsm8k",
            {"main/test-00000-of-00001.parquet": test, "main/train-00000-of-00001.parquet": train},
            revision=BENCHMARKS.get("gsm8k").sources[0].revision,
        )
        n = len(BENCHMARKS.get("gsm8k").implementation().samples("test"))
    print(f"wrote the gsm8k snapshot ({n} test items) under {dest}")


def word_tokenizer():  # type: ignore[no-untyped-def]
    """A tokenizer that cuts the synthetic items as Qwen's does: a token per word, one per digit
    (the tiny model's byte-level BPE, trained on 3,000 further synthetic problems until every
    word of theirs is whole). The tiny model's own 1,024 tokens cut a 10-shot prompt into
    ~1.6x as many (2,731 against 1,663)."""
    from posttrainbench.embedded import tiny_model

    rng = random.Random(1)  # make_data's items come from seed 0
    corpus = [" ".join(_problem(rng)) for _ in range(3000)] + tiny_model._corpus()
    return tiny_model.build_tokenizer(corpus, vocab_size=8192)


def tiny_tokenizer():  # type: ignore[no-untyped-def]
    from posttrainbench.embedded import tiny_model

    return tiny_model.build_tokenizer()


# --tokenizer: "tiny" gives the figures taken before 2026-12-07
TOKENIZERS = {"words": word_tokenizer, "tiny": tiny_tokenizer}


def build_model(dest: Path, shape: dict[str, object], tokenizer: str = "words") -> int:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = TOKENIZERS[tokenizer]()
    tok.add_special_tokens(
        {"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<think>", "</think>"]}
    )
    config = Qwen3Config(**shape, torch_dtype="bfloat16")  # type: ignore[arg-type]
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(dest, safe_serialization=True)
    tok.save_pretrained(dest)
    return sum(p.numel() for p in model.parameters())


def run(
    data: Path,
    limit: int,
    batch_size: int | None,
    max_tokens: int,
    bandwidth: float | None,
    backend: str = "hf",
    stock: bool = False,
    smoke: bool = False,
    seeds: int | None = None,
    tokenizer: str = "words",
) -> None:
    _importable()
    from inspect_ai.log import read_eval_log

    from posttrainbench.evaluate import run as harness
    from posttrainbench.evaluate.run import evaluate_model
    from tests.fixtures.hub import hf_home
    from tests.fixtures.models import TEXT

    if stock:
        harness.INSPECT_SETTINGS = {}
    print(f"backend {backend}, inspect settings {harness.INSPECT_SETTINGS or 'its own'}")

    with tempfile.TemporaryDirectory() as tmp, hf_home(data):
        model_dir = Path(tmp) / "model"
        t0 = time.perf_counter()
        # --smoke: the tests' small text shape (a CPU run of this script), the vocabulary kept
        shape = dict(QWEN3_1_7B, **TEXT) if smoke else QWEN3_1_7B
        n_params = build_model(model_dir, shape, tokenizer)
        name = "small" if smoke else "Qwen3-1.7B"
        print(f"built a {name}-shaped model: {n_params / 1e9:.2f} B params in "
              f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
        t0 = time.perf_counter()
        m = evaluate_model(
            model_dir, "gsm8k", Path(tmp) / "eval", limit=limit, template_family="qwen3",
            batch_size=batch_size, max_tokens=max_tokens, backend=backend, seeds=seeds,
        )  # fmt: skip
        batch_size = int(m.params["batch_size"] or 0)
        if backend == "engine":
            print(f"engine: {m.params.get('engine')}, compiled {m.params.get('engine_compiled')}")
        wall = time.perf_counter() - t0
        # every seed's samples (v1.2 evaluates GSM8K with five; the engine runs them together)
        logs = [read_eval_log(s.log_file.removeprefix("file://")) for s in m.seeds if s.log_file]
    print(f"seeds {len(m.seeds)} ({m.params.get('seeds_run') or 'one'}), logs read {len(logs)}")
    samples = [sample for log in logs for sample in log.samples or []]
    out_tokens = sum(s.output.usage.output_tokens for s in samples if s.output.usage)
    in_tokens = sum(s.output.usage.input_tokens for s in samples if s.output.usage)
    print(
        f"wall {wall:.0f} s incl. loading: {out_tokens / wall:,.0f} generated tokens/s", flush=True
    )
    starts = [_time(getattr(s, "started_at", None)) for s in samples]
    ends = [_time(getattr(s, "completed_at", None)) for s in samples]
    known = [t for t in starts if t] and [t for t in ends if t]
    gen_wall = max(t for t in ends if t) - min(t for t in starts if t) if known else wall
    prompt = in_tokens / max(len(samples), 1)
    bandwidth = bandwidth or _measured_bandwidth()
    # Roofline: per decode step, weights once + the batch's KV cache once.
    weight_bytes = n_params * 2
    kv_per_token = 2 * int(shape["num_key_value_heads"]) * int(shape["head_dim"]) * 2
    kv_per_token *= int(shape["num_hidden_layers"])
    context = prompt + max_tokens / 2
    step_s = (weight_bytes + batch_size * context * kv_per_token) / bandwidth
    roofline = batch_size / step_s
    measured = out_tokens / gen_wall
    print(f"samples {len(samples)}  batch (max_connections) {batch_size}  max_tokens {max_tokens}")
    print(f"prompt tokens/item {prompt:.0f}  generated tokens {out_tokens}")
    print(f"wall {wall:.0f} s incl. loading; generation {gen_wall:.0f} s")
    print(f"generated tokens/s {measured:,.0f} (end to end {out_tokens / wall:,.0f})")
    print(
        f"roofline {roofline:,.0f} tok/s at {bandwidth / 1e12:.1f} TB/s "
        f"(step {step_s * 1e3:.2f} ms: weights {weight_bytes / 1e9:.2f} GB + KV "
        f"{batch_size * context * kv_per_token / 1e9:.2f} GB) → {measured / roofline:.1%} of it"
    )


def _importable() -> None:
    """The repository's tests (fixtures) and src (posttrainbench, where it is not installed:
    a GPU machine given the working tree) on the import path."""
    root = Path(__file__).resolve().parents[1]
    sys.path[:0] = [str(root), str(root / "src")]


def _measured_bandwidth() -> float:
    """The GPU's copy bandwidth as eval_engine.py measures it; 3.0e12 (an H100's) without one."""
    import torch

    if not torch.cuda.is_available():
        return 3.0e12
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eval_engine import copy_bandwidth

    return copy_bandwidth(torch.device("cuda"))


def _time(value: object) -> float | None:
    """Seconds since the epoch of a sample timestamp (datetime or ISO text)."""
    from datetime import datetime

    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make-data")
    mk.add_argument("dest", type=Path)
    r = sub.add_parser("run")
    r.add_argument("data", type=Path)
    r.add_argument("--limit", type=int, default=512)
    r.add_argument("--batch-size", type=int, default=None, help="default: the backend's")
    r.add_argument("--backend", default="hf", choices=("hf", "engine"))
    r.add_argument("--stock", action="store_true", help="inspect's own display and log")
    r.add_argument("--smoke", action="store_true", help="a small model (a CPU run of the script)")
    r.add_argument("--max-tokens", type=int, default=256)
    r.add_argument("--seeds", type=int, default=None, help="default: the suite's (GSM8K: 5)")
    r.add_argument("--bandwidth", type=float, default=None, help="default: measured (bytes/s)")
    r.add_argument(
        "--tokenizer",
        default="words",
        choices=sorted(TOKENIZERS),
        help="words: a token per word and digit, as Qwen's; tiny: the tiny model's",
    )
    args = p.parse_args()
    if args.cmd == "make-data":
        make_data(args.dest)
    else:
        run(
            args.data, args.limit, args.batch_size, args.max_tokens, args.bandwidth,
            args.backend, args.stock, args.smoke, args.seeds, args.tokenizer,
        )  # fmt: skip


if __name__ == "__main__":
    main()
