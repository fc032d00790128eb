"""Throughput of the pristine evaluation (inspect-ai hf provider) on a model folder.

    python benchmarks/eval_throughput.py [MODEL_DIR] [--limit N] [--batch-size B]

Without MODEL_DIR it builds/uses the embedded ptb-tiny. Prints samples/s and wall time; run it
on the GPU machine too to compare.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model_dir", nargs="?", type=Path)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args()

    from posttrainbench.config import load_settings
    from posttrainbench.embedded import tiny_model
    from posttrainbench.evaluate.run import evaluate_model

    model = args.model_dir or tiny_model.ensure_built(load_settings().models_dir)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        m = evaluate_model(
            model, "arith", Path(out), limit=args.limit, template_family="ptb-tiny",
            batch_size=args.batch_size,
        )  # fmt: skip
        wall = time.perf_counter() - start
    print(f"model {model}")
    print(f"samples {m.n_samples}  batch {args.batch_size}  accuracy {m.score:.3f}")
    print(
        f"wall {wall:.1f}s (inspect-reported {m.duration_s}s)  {m.n_samples / wall:.1f} samples/s"
    )


if __name__ == "__main__":
    main()
