"""The evaluation commands: `ptb eval`, `ptb baseline`, `ptb data prefetch`, `ptb audit`.

Thin: each resolves its arguments and calls the evaluation the harness itself uses (the
subprocess with the max-token ladder, `evaluate.launch.run_evaluation`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.catalog.benchmarks import OFFICIAL as OFFICIAL_BENCHMARKS
from posttrainbench.catalog.models import OFFICIAL as OFFICIAL_MODELS
from posttrainbench.catalog.suites import DEFAULT_SUITE, suite_for_run
from posttrainbench.catalog.suites import suite as suite_by_name
from posttrainbench.cli.common import BackendOpt, JudgeOpt, JudgeUrlOpt, console, out
from posttrainbench.config import load_settings
from posttrainbench.errors import ConfigError, EvaluationError
from posttrainbench.evaluate.data import check_evaluable
from posttrainbench.evaluate.launch import EvalOptions, run_evaluation
from posttrainbench.evaluate.targets import Target, resolve
from posttrainbench.records import EvalMetrics
from posttrainbench.results import baselines
from posttrainbench.results.layout import EvalPaths

BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--eval-base-url", metavar="URL", help="vllm: a running server's /v1 URL."),
]
SuiteOpt = Annotated[
    str,
    typer.Option(
        "--suite",
        metavar="ID",
        help="Protocol version whose seeds apply: ptb-v1.2 or ptb-v1.0; see: ptb list suites.",
    ),
]


def _timeout(benchmark: str, timeout: float | None) -> float:
    return timeout or load_settings().eval_timeout_s or BENCHMARKS.get(benchmark).eval_timeout_s


def _summary(target: Target, m: EvalMetrics, where: Path) -> str:
    failed = f", {m.n_failed} failed" if m.n_failed else ""
    judge = f", judge ${m.judge.cost_usd:.4f}" if m.judge and m.judge.cost_usd else ""
    seeds = f", mean of {len(m.seeds)} seeds" if len(m.seeds) > 1 else ""
    return (
        f"{target.key} on {m.benchmark}: {m.metric} {m.score:.4f} ({m.n_samples} items{failed}; "
        f"max_tokens {m.max_tokens}, ladder step {m.ladder_step}{judge}){seeds}, "
        f"suite {m.suite} → {where}"
    )


def eval_cmd(
    model: Annotated[str, typer.Argument(metavar="MODEL_DIR|HF_ID", help="What to evaluate.")],
    benchmark: Annotated[str, typer.Option(metavar="ID", help="Benchmark id.")],
    limit: Annotated[
        int | None, typer.Option(metavar="N", help="Evaluate N items (default: all).")
    ] = None,
    base_model: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="The base model it was trained from (its template)."),
    ] = None,
    template_family: Annotated[
        str | None, typer.Option(metavar="FAMILY", help="Chat template family, e.g. qwen3.")
    ] = None,
    eval_backend: BackendOpt = "auto",
    eval_base_url: BaseUrlOpt = None,
    judge_model: JudgeOpt = None,
    judge_base_url: JudgeUrlOpt = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(metavar="N", help="One fixed max_tokens instead of the benchmark's ladder."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of per-sample seeds and shuffles.")] = 0,
    output: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Where logs and metrics.json go."),
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="Time limit of the evaluation.")
    ] = None,
    suite: SuiteOpt = DEFAULT_SUITE,
) -> None:
    """Evaluate a model folder or a cached hub model on one benchmark, as the harness does."""
    info = BENCHMARKS.get(benchmark)
    chosen = suite_for_run(suite, info.id)  # before anything runs
    settings = load_settings()
    target = resolve(
        model,
        base_model=base_model,
        template_family=template_family,
        models_root=settings.models_dir,
    )
    check_evaluable(info, judge_model)  # before any folder is made, as `ptb run` does
    stamp = time.strftime("%Y%m%d-%H%M%S")
    where = output or settings.results_dir / "evals" / f"{target.key}__{info.id}-{stamp}"
    opts = EvalOptions(
        backend=eval_backend,
        base_url=eval_base_url,
        judge_model=judge_model,
        judge_base_url=judge_base_url,
        seed=seed,
        suite=chosen.id,
        limit=limit,
        max_tokens=max_tokens,
    )
    console.print(
        f"evaluating {target.path} on {info.display_name} (suite {chosen.id}) → {where}",
        markup=False,
    )
    m = run_evaluation(
        target.path,
        info.id,
        target.family,
        EvalPaths(where),
        timeout_s=_timeout(info.id, timeout),
        grace_s=settings.grace_s,
        options=opts,
    )
    out.print(_summary(target, m, where), markup=False)


def baseline_cmd(
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models", metavar="NAME", help="Base models (repeatable; default: the four)."
        ),
    ] = None,
    benchmarks: Annotated[
        list[str] | None,
        typer.Option("--benchmarks", metavar="ID", help="Benchmarks (default: the suite's)."),
    ] = None,
    instruct: Annotated[
        bool, typer.Option(help="Also evaluate each base model's instruct twin.")
    ] = True,
    eval_backend: BackendOpt = "auto",
    eval_base_url: BaseUrlOpt = None,
    judge_model: JudgeOpt = None,
    judge_base_url: JudgeUrlOpt = None,
    max_tokens: Annotated[
        int | None, typer.Option(metavar="N", help="One fixed max_tokens (default: the ladder).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(metavar="SECONDS", help="Time limit per evaluation.")
    ] = None,
    suite: SuiteOpt = DEFAULT_SUITE,
) -> None:
    """Measure zero-shot base (and instruct) scores under a suite; `ptb report` and runs'
    fallbacks of that suite use them instead of the published table's."""
    settings = load_settings()
    names = models or [m.name for m in OFFICIAL_MODELS]
    chosen = suite_by_name(suite)
    bench_ids = [BENCHMARKS.get(b).id for b in (benchmarks or chosen.benchmarks)]
    for bench in bench_ids:
        suite_for_run(chosen.id, bench)  # one the suite leaves out: refused before measuring
    failures = 0
    for name in names:
        info = MODELS.get(name)
        targets = [info.name] + ([info.instruct] if instruct and info.instruct else [])
        for model_name in targets:
            try:
                target = resolve(model_name, models_root=settings.models_dir)
            except Exception as exc:  # a model not downloaded: say so, go on
                failures += 1
                out.print(f"{model_name}: skipped: {exc}", markup=False)
                continue
            for bench in bench_ids:
                paths = baselines.measured_eval_paths(
                    settings.baselines_dir, target.key, bench, chosen.id
                )
                opts = EvalOptions(
                    backend=eval_backend,
                    base_url=eval_base_url,
                    judge_model=judge_model,
                    judge_base_url=judge_base_url,
                    suite=chosen.id,
                    max_tokens=max_tokens,
                )
                try:
                    m = run_evaluation(
                        target.path, bench, target.family, paths,
                        timeout_s=_timeout(bench, timeout), grace_s=settings.grace_s,
                        options=opts,
                    )  # fmt: skip
                except (EvaluationError, ConfigError) as exc:
                    failures += 1
                    out.print(f"{target.key} on {bench}: failed: {exc.message}", markup=False)
                    continue
                ref = baselines.record_measured(settings.baselines_dir, target.key, m)
                out.print(_summary(target, m, Path(ref.detail or "")), markup=False)
    if failures:
        raise typer.Exit(1)


def prefetch_cmd(
    benchmarks: Annotated[
        list[str] | None,
        typer.Option("--benchmarks", metavar="ID", help="Benchmarks (default: the seven)."),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option("--models", metavar="NAME", help="Models or hub ids (default: the four)."),
    ] = None,
    instruct: Annotated[bool, typer.Option(help="Also fetch the instruct twins.")] = True,
) -> None:
    """Download benchmark data and models into the caches the evaluation reads offline
    (HF_HOME for the hub, PTB_CACHE/data for pinned files)."""
    from posttrainbench.evaluate.prefetch import check_reachable, prefetch_benchmark, prefetch_model

    both_default = benchmarks is None and models is None
    bench_ids = benchmarks or ([b.id for b in OFFICIAL_BENCHMARKS] if both_default else [])
    bench_ids = [BENCHMARKS.get(b).id for b in bench_ids]
    model_names = models or ([m.name for m in OFFICIAL_MODELS] if both_default else [])
    check_reachable(bench_ids, model_names)
    failures = 0
    for fetched in [
        *(f for b in bench_ids for f in prefetch_benchmark(b)),
        *(f for m in model_names for f in prefetch_model(m, instruct=instruct)),
    ]:
        if fetched.error:
            failures += 1
            out.print(f"{fetched.what}: FAILED {fetched.error}", markup=False)
        else:
            out.print(f"{fetched.what}: {fetched.path}", markup=False)
    if failures:
        raise typer.Exit(1)


def audit_cmd(
    path: Annotated[
        Path, typer.Argument(metavar="EVAL_LOG|RUN_DIR", help="An inspect log or a folder.")
    ],
) -> None:
    """Re-score stored HumanEval answers with the isolated checker; list those that passed
    before and fail now (exit 1 if any)."""
    from rich.table import Table

    from posttrainbench.evaluate.audit import audit

    rows = audit(path)
    flagged = [r for r in rows if r.passed_before and not r.passes_now]
    table = Table("sample", "stored", "now", "why", "log", title="passed before, fail now")
    for r in flagged:
        table.add_row(r.sample, r.stored, "I", r.reason, r.log)
    if flagged:
        out.print(table)
    gained = sum(1 for r in rows if r.passes_now and not r.passed_before)
    out.print(
        f"{len(rows)} HumanEval samples re-checked: {len(flagged)} passed before and fail now, "
        f"{gained} failed before and pass now",
        markup=False,
    )
    if flagged:
        raise typer.Exit(1)
