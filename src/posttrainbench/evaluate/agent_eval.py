"""The agent's evaluate.py: generate in the sandbox, score through the harness's scoring service.

The workspace's `eval_data/` holds the test items' inputs only. On such a split this runs the
benchmark's own task with the harness's generation code (backend, chat template, the model's
own sampling, `--limit` selection, the evaluation seeds of the run's suite, which the service
states: `--seeds N` limits the count for a quick look) but no scorer, then posts each sample's
output to the scoring service (`PTB_SCORING_URL`, token in `PTB_SCORING_TOKEN`), which scores
it with the benchmark's real scorer where the targets are, and writes what it answered to
`<log-dir>/metrics.json` and `<log-dir>/items.json`. Splits whose answers the agent may see (the
embedded benchmark's public dev split) are evaluated locally, as before, by
`posttrainbench.evaluate.__main__`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posttrainbench.evaluate.__main__ import EXIT_CODES, parser, report_error
from posttrainbench.evaluate.__main__ import main as local_main
from posttrainbench.evaluate.backends import BACKENDS
from posttrainbench.evaluate.backends import resolve as resolve_backend
from posttrainbench.evaluate.benchmarks.base import EVAL_DATA_VAR
from posttrainbench.evaluate.scoring_service import (
    PATH,
    PROTOCOL_PATH,
    TOKEN_VAR,
    URL_VAR,
    ScoringProtocol,
    ScoringReply,
)

if TYPE_CHECKING:
    from posttrainbench.catalog.suites import Suite

ITEMS_FILE = "items.json"
HARNESS_JUDGE = "none/judged-by-the-harness"


def inputs_only(split: str) -> bool:
    """Whether the split is the exported inputs (no targets here): scored by the service."""
    exported = os.environ.get(EVAL_DATA_VAR)
    return exported is not None and (Path(exported) / f"{split}.jsonl").is_file()


def generate(
    args: Any, limit: int | None, seed: int, choice_seed: int | None, sampling: Any
) -> tuple[Any, int | None]:
    """The benchmark's task on the exported inputs, generation only: (inspect log, max_tokens)."""
    from posttrainbench.catalog import BENCHMARKS
    from posttrainbench.errors import EvaluationError
    from posttrainbench.evaluate.benchmarks.base import TaskOptions, make_task
    from posttrainbench.evaluate.run import model_request, run_task

    info = BENCHMARKS.get(args.benchmark)
    opts = TaskOptions(
        split=args.split,
        limit=limit,
        max_tokens=args.max_tokens,
        seed=seed,
        choice_seed=choice_seed,
        sampling=sampling,
        judge_model=HARNESS_JUDGE if info.judged else None,  # never called: no scorer here
    )
    task = make_task(info.implementation(), opts)
    task.scorer = None  # the targets are not here: the scoring service scores
    req = model_request(
        info, args.model_path, template_family=args.template_family,
        tokenizer_dir=getattr(args, "tokenizer_path", None),  # as the harness's evaluation
        batch_size=args.batch_size, base_url=args.base_url, sampling=sampling,
    )  # fmt: skip
    log = run_task(task, req.model_copy(update={"seed": seed}), args.backend, args.log_dir)
    if log.status != "success":
        detail = log.error.message if log.error else f"status {log.status}"
        raise EvaluationError(f"generation on {args.benchmark}/{args.split} failed: {detail}")
    return log, task.config.max_tokens


def _call(path: str, body: dict[str, Any] | None = None) -> bytes:
    """GET (no body) or POST `path` on the scoring service; the reply's body, or
    EvaluationError."""
    import httpx

    from posttrainbench.errors import EvaluationError

    url, token = os.environ.get(URL_VAR), os.environ.get(TOKEN_VAR)
    if not url or not token:
        raise EvaluationError(
            f"no scoring service ({URL_VAR} is not set): the test answers stay with the harness",
            "run evaluate.py inside a run's sandbox, where the harness scores it",
            kind="fatal",
        )
    headers = {"authorization": f"Bearer {token}"}
    try:
        with httpx.Client(trust_env=False, timeout=httpx.Timeout(None, connect=30)) as client:
            target = url.rstrip("/") + path
            if body is None:
                r = client.get(target, headers=headers)
            else:
                r = client.post(target, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise EvaluationError(
            f"the scoring service at {url} did not answer: {exc}", kind="infrastructure"
        ) from None
    if r.status_code != 200:
        try:
            why = str(r.json().get("error"))
        except ValueError:
            why = r.text[:200]
        raise EvaluationError(
            f"the scoring service refused: {why} (HTTP {r.status_code})",
            kind="fatal" if r.status_code in (400, 401, 403) else "infrastructure",
        )
    return r.content


def post(body: dict[str, Any]) -> ScoringReply:
    """Send the outputs to the scoring service; its reply, or EvaluationError."""
    return ScoringReply.model_validate_json(_call(PATH, body))


def protocol() -> ScoringProtocol:
    """The run's benchmark and suite, as the harness's scoring service states them."""
    return ScoringProtocol.model_validate_json(_call(PROTOCOL_PATH))


def run_suite(args: Any) -> Suite:
    """The suite of the run (RunSpec.suite, from the service, never from this workspace);
    `--suite` or `--benchmark` naming another than the run's is refused."""
    from posttrainbench.catalog import BENCHMARKS
    from posttrainbench.catalog.suites import suite as suite_named
    from posttrainbench.errors import EvaluationError

    fixed = protocol()
    if BENCHMARKS.get(args.benchmark).id != fixed.benchmark:
        raise EvaluationError(
            f"this run's benchmark is {fixed.benchmark}, not {args.benchmark}: the harness "
            "scores only the run's benchmark",
            f"pass --benchmark {fixed.benchmark}",
            kind="fatal",
        )
    if args.suite is not None and suite_named(args.suite).id != fixed.suite:
        raise EvaluationError(
            f"this run follows suite {fixed.suite}, not {args.suite}: its evaluations use "
            f"{fixed.suite}'s seeds",
            "leave out --suite (--seeds N evaluates fewer seeds for a quick look)",
            kind="fatal",
        )
    return suite_named(fixed.suite)


def evaluate_remote(args: Any, limit: int | None) -> ScoringReply:
    """Generate and have the service score once per evaluation seed, by the harness's rule
    (the suite's seed policy, the model's own sampling; `--seeds` overrides the count); the
    reply returned is the last seed's, metrics.json holds the mean and every seed."""
    from posttrainbench.catalog import BENCHMARKS
    from posttrainbench.errors import EvaluationError
    from posttrainbench.evaluate.generation import model_sampling
    from posttrainbench.evaluate.run import evaluation_seeds
    from posttrainbench.records import EvalMetrics, SeedScore
    from posttrainbench.results.layout import EvalPaths
    from posttrainbench.results.store import write_json

    started = time.monotonic()
    chosen = run_suite(args)
    policy = chosen.seed_policy(args.benchmark)
    sampling = model_sampling(args.model_path)
    count = args.seeds or policy.seeds_for(greedy=sampling.greedy)
    seeds: list[SeedScore] = []
    items: list[dict[str, Any]] = []
    reply: ScoringReply | None = None
    max_tokens: int | None = None
    for value in evaluation_seeds(args.seed, count):
        choice_seed = value if policy.shuffles_choices else None
        log, max_tokens = generate(args, limit, value, choice_seed, sampling)
        completions = [
            {"id": s.id, "epoch": s.epoch, "output": s.output.model_dump(mode="json")}
            for s in log.samples or []
        ]
        reply = post(
            {"split": args.split, "limit": limit, "choice_seed": choice_seed,
             "completions": completions}
        )  # fmt: skip
        seeds.append(
            SeedScore(
                seed=value,
                score=reply.score,
                n_samples=reply.n_items,
                n_failed=reply.n_failed,
                log_file=str(log.location),
            )
        )
        items += [{"seed": value, **i.model_dump(mode="json")} for i in reply.items]
    if reply is None:
        raise EvaluationError(
            f"no evaluation seed to run for {args.benchmark}", "pass --seeds 1 or more"
        )
    info = BENCHMARKS.get(args.benchmark)
    write_json(
        EvalPaths(args.log_dir).metrics,
        EvalMetrics(
            benchmark=args.benchmark,
            benchmark_version=info.version,
            split=args.split,
            metric=reply.metric,
            score=sum(s.score or 0.0 for s in seeds) / len(seeds),
            n_samples=reply.n_items,
            n_failed=sum(s.n_failed for s in seeds),
            model_path=str(args.model_path),
            log_file=seeds[0].log_file,
            params={
                "limit": limit,
                "batch_size": BACKENDS.get(resolve_backend(args.backend)).default_batch_size
                if args.batch_size is None
                else args.batch_size,
                "scored_by": "harness",
            },
            backend=resolve_backend(args.backend),
            template_family=args.template_family,
            max_tokens=max_tokens,
            seed=args.seed,
            suite=chosen.id,
            sampling=sampling,
            seeds=seeds,
            duration_s=round(time.monotonic() - started, 2),
        ),
    )
    (args.log_dir / ITEMS_FILE).write_text(json.dumps(items, indent=1) + "\n")
    return reply.model_copy(update={"score": sum(s.score or 0.0 for s in seeds) / len(seeds)})


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not inputs_only(args.split):
        return local_main(argv)
    if not (args.model_path / "config.json").is_file():
        print(f"error: {args.model_path} has no config.json (not a model folder)", file=sys.stderr)
        return EXIT_CODES["fatal"]
    from posttrainbench.errors import PtbError

    limit = args.limit if args.limit is not None else args.default_limit
    try:
        reply = evaluate_remote(args, limit or None)
    except PtbError as exc:
        return report_error(exc)
    print(
        f"{reply.benchmark}/{reply.split}: {reply.metric} {reply.score:.4f} on {reply.n_items} "
        "samples (scored by the harness; the mean over the evaluation seeds in metrics.json)"
        + (f" ({reply.n_failed} failed)" if reply.n_failed else "")
    )
    print(f"per item: {args.log_dir / ITEMS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
