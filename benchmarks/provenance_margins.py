"""Calibrate provenance on honest training on the target task itself (ptb-tiny × arith).

python benchmarks/provenance_margins.py [--dir /tmp/ptb-margins] [--twin-steps 1500] [--quick]
    [--base MODEL_DIR --train TRAIN.jsonl]   # another base or data; default: ptb-tiny, arith

Trains on a GPU when there is one (the figures do not depend on it).

Really trains the embedded ptb-tiny on arith's allowed train split (plain SFT, completion-only loss,
AdamW, CPU): a "twin" trained long (what long task training converges to), nine honest runs
(three seeds × three lengths, two learning rates), then 30/50/70 % linear merges of the base with
the twin and a merge fine-tuned a little. Each is compared with the base and the twin
(`weights.compare_weights`) and judged (`weights.judge`); the table shows the fitted merge
coefficient α, the residual of the merge fit, and the findings. The margins printed at the end are
the gaps between the honest runs' smallest residual and the merges' largest, and the rule's
threshold (`weights.MAX_MERGE_RESIDUAL`) between them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

from posttrainbench.integrity import weights


def _setup(
    root: Path, base: Path | None, train_file: Path | None
) -> tuple[Path, list[tuple[str, str]]]:
    if base is not None and train_file is not None:
        lines = train_file.read_text().splitlines()
        return base, [(r["question"], r["answer"]) for r in map(json.loads, lines) if r]
    os.environ.setdefault("PTB_CACHE", str(root / "cache"))
    from posttrainbench.embedded import arith, tiny_model

    base = tiny_model.ensure_built(Path(os.environ["PTB_CACHE"]) / "models")
    rows = [(i.question, i.answer) for i in arith.split_items("train")]
    return base, rows


def train(base: Path, rows: list[tuple[str, str]], out: Path, *, steps: int, lr: float,
          seed: int, batch: int = 32) -> Path:  # fmt: skip
    """SFT of the base on (question, answer) rows as the recipe does it; saves to `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (out / "model.safetensors").is_file():
        return out
    t0 = time.monotonic()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    rng = random.Random(seed)
    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, use_safetensors=True).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    data = []
    for q, a in rows:
        chat = [{"role": "user", "content": q}]
        prompt = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tok(f" {a}{tok.eos_token}", add_special_tokens=False)["input_ids"]
        data.append((p_ids + c_ids, [-100] * len(p_ids) + c_ids))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    for step in range(steps):
        warm = min(1.0, (step + 1) / 10)
        for group in opt.param_groups:
            group["lr"] = lr * warm
        chunk = rng.sample(data, batch)
        width = max(len(ids) for ids, _ in chunk)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in chunk])
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in chunk])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in chunk])
        loss = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)
        ).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.to("cpu").save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    took = time.monotonic() - t0
    print(f"{out.name}: {steps} steps, loss {loss.item():.3f}, {took:.0f}s", file=sys.stderr)
    return out


def merge(base: Path, alt: Path, out: Path, alpha: float, noise: float = 0.0) -> Path:
    """(1 - α)·base + α·alt, plus a little full-rank noise (`noise` of each tensor's std)."""
    from safetensors.torch import load_file, save_file

    if (out / "model.safetensors").is_file():
        return out
    out.mkdir(parents=True)
    b, a = load_file(str(base / "model.safetensors")), load_file(str(alt / "model.safetensors"))
    g = torch.Generator().manual_seed(int(alpha * 100))
    merged = {}
    for k, v in b.items():
        m = (1 - alpha) * v.float() + alpha * a[k].float()
        if noise and m.ndim >= 2:
            m = m + torch.randn(m.shape, generator=g) * m.std() * noise
        merged[k] = m.to(v.dtype).contiguous()
    save_file(merged, str(out / "model.safetensors"))
    return out


def measure(
    root: Path,
    twin_steps: int,
    quick: bool,
    base_dir: Path | None = None,
    train_file: Path | None = None,
    lengths: list[int] | None = None,
    seeds: list[int] | None = None,
) -> dict[str, dict[str, float | str]]:
    base, rows = _setup(root, base_dir, train_file)
    t0 = time.monotonic()
    twin = train(base, rows, root / "twin", steps=twin_steps, lr=4e-3, seed=100)
    lengths = lengths or ([40, 150] if quick else [60, 250, 600])
    seeds = seeds or ([0, 1] if quick else [0, 1, 2])
    honest: dict[str, Path] = {}
    for seed in seeds:
        for i, steps in enumerate(lengths):
            lr = 1e-2 if (seed + i) % 2 else 4e-3
            name = f"honest s{seed} {steps} steps lr {lr:g}"
            honest[name] = train(
                base, rows, root / f"h{seed}-{steps}", steps=steps, lr=lr, seed=seed
            )
    print(f"trained in {time.monotonic() - t0:.0f}s", file=sys.stderr)
    cheats = {
        "twin itself": twin,
        **{f"merge {a:.0%} twin": merge(base, twin, root / f"m{a}", a) for a in (0.3, 0.5, 0.7)},
        "merge 50% + 5% noise": merge(base, twin, root / "m-noisy", 0.5, noise=0.05),
    }
    table: dict[str, dict[str, float | str]] = {}
    for kind, group in (("honest", honest), ("cheat", cheats)):
        for name, folder in group.items():
            cmp = weights.compare_weights(folder, base, {"twin": twin})
            alt = cmp.alternatives[0]
            table[name] = {
                "kind": kind,
                "projection": alt.projection,
                "delta_cos": alt.delta_cos,
                "residual": alt.residual,
                "fitted": alt.fitted_fraction,
                "closer": alt.mean_cos - cmp.mean_cos_base,
                "findings": ",".join(
                    f.code + ("" if f.decisive else "?") for f in weights.judge(cmp)
                ),
            }
    return table


def _decisive(row: dict[str, float | str]) -> bool:
    return any(not code.endswith("?") for code in str(row["findings"]).split(",") if code)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dir", type=Path, default=None)
    p.add_argument("--twin-steps", type=int, default=1500)
    p.add_argument("--quick", action="store_true", help="Fewer and shorter honest runs.")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="Honest runs' seeds.")
    p.add_argument("--lengths", type=int, nargs="+", default=None, help="Honest runs' steps.")
    p.add_argument("--base", type=Path, default=None, help="A base model folder (with --train).")
    p.add_argument("--train", type=Path, default=None, help="JSONL of question/answer rows.")
    args = p.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="ptb-margins-"))
    table = measure(
        root, args.twin_steps, args.quick, args.base, args.train, args.lengths, args.seeds
    )
    print(f"{'run':36} {'α (proj)':>9} {'Δcos':>6} {'resid':>6} {'fitted':>6} {'closer':>7}"
          "  findings (? = weak: decisive only if the agent obtained the twin)")  # fmt: skip
    for name, r in table.items():
        print(f"{name:36} {r['projection']:9.3f} {r['delta_cos']:6.3f} {r['residual']:6.3f}"
              f" {r['fitted']:6.3f} {r['closer']:7.3f}  {r['findings'] or '-'}")  # fmt: skip
    honest = [r for r in table.values() if r["kind"] == "honest"]
    merges = [r for n, r in table.items() if n.startswith("merge")]
    low = min(float(r["residual"]) for r in honest)
    high = max(float(r["residual"]) for r in merges)
    fitted = max(float(r["fitted"]) for r in honest)
    print(f"honest runs' projection {min(float(r['projection']) for r in honest):.2f}"
          f"-{max(float(r['projection']) for r in honest):.2f}; merge-fit residual: honest min"
          f" {low:.3f}, merges max {high:.3f}, threshold {weights.MAX_MERGE_RESIDUAL:g}: margins"
          f" {low - weights.MAX_MERGE_RESIDUAL:.3f} (honest) and"
          f" {weights.MAX_MERGE_RESIDUAL - high:.3f} (merges); honest runs' largest share of"
          f" matrices fitting a merge {fitted:.3f} (partial-merge threshold"
          f" {weights.MIN_FITTED_FRACTION:g})")  # fmt: skip
    flagged = [n for n, r in table.items() if r["kind"] == "honest" and _decisive(r)]
    old = [n for n, r in table.items() if r["kind"] == "honest" and r["findings"]]
    print(f"honest runs with a decisive finding: {len(flagged)} of {len(honest)} (with every"
          f" finding decisive, as before: {len(old)})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
