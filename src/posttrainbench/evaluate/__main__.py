"""`python -m posttrainbench.evaluate`: the evaluation entry point shared by harness and agent.

The workspace's evaluate.py calls this same code, so an agent's local scores and the harness's
final score come from one implementation; the harness runs it on its own pristine install.
The exit status tells the harness's max-token ladder what happened: 0 scored, 2 bad input
(never retried), 3 a model pathology (OOM, runaway generation: step down), 4 an infrastructure
failure (judge or server outage: retry), 1 anything else.
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

from posttrainbench.errors import EvaluationError, PtbError
from posttrainbench.records import EvalMetrics
from posttrainbench.results.layout import EvalPaths

EXIT_CODES = {"fatal": 2, "pathology": 3, "infrastructure": 4}


def report_error(exc: PtbError) -> int:
    """Print the error in one line; the exit code says its kind (EXIT_CODES)."""
    from posttrainbench.evaluate.run import classify

    print(f"error: {exc}", file=sys.stderr)
    if isinstance(exc, EvaluationError) and exc.kind:
        return EXIT_CODES.get(exc.kind, 1)
    return EXIT_CODES.get(classify(exc), 1)


def seeds_line(m: EvalMetrics) -> str:
    """'3 seeds (seed 7 failed)': how many seeds the score averages."""
    failed = [str(s.seed) for s in m.seeds if s.score is None]
    scored = len(m.seeds) - len(failed)
    return f"{scored} seeds" + (f" (seed {', '.join(failed)} failed)" if failed else "")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--model-path", type=Path, default=Path("final_model"))
    p.add_argument("--split", default="test", help="test (the benchmark) or dev where offered")
    p.add_argument("--limit", type=int, default=None, help="evaluate N items (0: all)")
    p.add_argument("--default-limit", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--template-family", default=None, help="the base model's template family")
    p.add_argument(
        "--tokenizer-path", type=Path, default=None, help="tokenise with this folder's tokenizer"
    )
    p.add_argument("--collected", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--log-dir", type=Path, default=Path("eval_logs"))
    p.add_argument(
        "--batch-size", type=int, default=None, help="samples in flight (hf: 64, engine: 256)"
    )
    p.add_argument("--max-tokens", type=int, default=None, help="default: the benchmark's")
    p.add_argument("--seed", type=int, default=0, help="the run seed; evaluation seeds derive")
    p.add_argument(
        "--suite", default=None, help="protocol version whose seed policy applies (ptb-v1.2)"
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="evaluate N seeds (default: the suite's rule)"
    )
    p.add_argument("--judge-model", default=None, help="judged benchmarks: an inspect model")
    p.add_argument("--judge-base-url", default=None, help="OpenAI-compatible judge endpoint")
    p.add_argument(
        "--backend",
        default="auto",
        help="auto (engine with CUDA, else hf), engine, hf or vllm; the engine's KV cache takes "
        "85%% of the GPU memory free when it starts: use hf while training on the same GPU",
    )
    p.add_argument("--base-url", default=None, help="vllm: a running server's /v1 URL")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not (args.model_path / "config.json").is_file():
        print(f"error: {args.model_path} has no config.json (not a model folder)", file=sys.stderr)
        return EXIT_CODES["fatal"]
    limit = args.limit if args.limit is not None else args.default_limit
    from posttrainbench.evaluate.run import evaluate_model

    try:
        m = evaluate_model(
            args.model_path,
            args.benchmark,
            args.log_dir,
            split=args.split,
            limit=limit or None,
            template_family=args.template_family,
            tokenizer_dir=args.tokenizer_path,
            collected=args.collected,
            batch_size=args.batch_size,
            max_tokens=args.max_tokens,
            seed=args.seed,
            suite=args.suite,
            seeds=args.seeds,
            judge_model=args.judge_model,
            judge_base_url=args.judge_base_url,
            backend=args.backend,
            base_url=args.base_url,
        )
    except PtbError as exc:
        return report_error(exc)
    print(
        f"{m.benchmark}/{m.split}: {m.metric} {m.score:.4f} on {m.n_samples} samples"
        + (f" ({m.n_failed} failed)" if m.n_failed else "")
        + (f", mean of {seeds_line(m)}" if len(m.seeds) > 1 else "")
    )
    print(f"metrics: {EvalPaths(args.log_dir).metrics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
