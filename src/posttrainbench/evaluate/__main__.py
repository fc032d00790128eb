"""`python -m posttrainbench.evaluate`: the evaluation entry point shared by harness and agent.

The workspace's evaluate.py calls this same code, so an agent's local scores and the harness's
final score come from one implementation; the harness runs it on its own pristine install.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# The model under test is a local folder; the evaluator never needs the hub. Set before any
# huggingface_hub import, which reads these once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from posttrainbench.errors import PtbError
from posttrainbench.results.layout import EvalPaths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--model-path", type=Path, default=Path("final_model"))
    p.add_argument("--split", default="test", help="test (the benchmark) or dev where offered")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    p.add_argument("--template-family", default=None, help="chat template if the model has none")
    p.add_argument("--log-dir", type=Path, default=Path("eval_logs"))
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    if not (args.model_path / "config.json").is_file():
        print(f"error: {args.model_path} has no config.json (not a model folder)", file=sys.stderr)
        return 2
    from posttrainbench.evaluate.run import evaluate_model

    try:
        m = evaluate_model(
            args.model_path,
            args.benchmark,
            args.log_dir,
            split=args.split,
            limit=args.limit,
            template_family=args.template_family,
            batch_size=args.batch_size,
        )
    except PtbError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{m.benchmark}/{m.split}: {m.metric} {m.score:.4f} on {m.n_samples} samples")
    print(f"metrics: {EvalPaths(args.log_dir).metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
