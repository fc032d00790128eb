"""Pristine evaluation of one model folder on one benchmark split, through inspect-ai.

Loads weights as safetensors only and never with remote code. The chat template is always the
harness's template of the base model's family (never the submitted tokenizer's), decoding is
the benchmark's, and generation stops at the family's end-of-turn tokens. Given `tokenizer_dir`
(the harness passes the base model's folder) text is tokenised with its tokenizer files. Given
`collected` (collect's record of the folder, the harness passes it), the folder must be exactly
what collect copied, sha256 by sha256, holding exactly the weight set it recorded, before anything
is loaded. Writes the inspect
log and metrics.json into the output folder and returns the metrics. A failure raises
`EvaluationError` whose `kind` tells the max-token ladder what to do (see `classify`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.catalog.benchmarks import BenchmarkInfo, HubSource
from posttrainbench.catalog.suites import suite as suite_named
from posttrainbench.errors import ConfigError, DataUnavailableError, EvaluationError, PtbError
from posttrainbench.evaluate.answer_check import code_isolation
from posttrainbench.evaluate.backends import BACKENDS, ModelRequest, ModelSpec
from posttrainbench.evaluate.backends import resolve as resolve_backend
from posttrainbench.evaluate.chat_templates import family, template_path
from posttrainbench.evaluate.generation import model_sampling
from posttrainbench.records import (
    CollectOutcome,
    EvalMetrics,
    JudgeUsage,
    SamplingDefaults,
    SeedScore,
)
from posttrainbench.results.layout import EvalPaths
from posttrainbench.results.store import write_json

if TYPE_CHECKING:
    from posttrainbench.evaluate.benchmarks.base import TaskOptions

_BAD_INPUT_MARKERS = (
    "safetensorerror",
    "unrecognized configuration",
    "no file named",
    "does not appear to have a file",
    "is not a valid",
    "not a model folder",
    "requires optional dependencies",
)

FailureKind = Literal["pathology", "infrastructure", "fatal"]
OWN_TOKENIZER = "the model's own"  # metrics.params["tokenizer"] when no tokenizer_dir was given

_OOM_MARKERS = ("out of memory", "outofmemory", "cuda error: out of memory", "cublas_status_alloc")
_INFRA_MARKERS = (
    "infrastructure failure",  # said by scorers whose own machinery failed (answer_check)
    "connection refused",
    "connecterror",
    "connection reset",
    "timed out",
    "temporarily unavailable",
    "service unavailable",
    "rate limit",
    "ratelimit",
    " 502",
    " 503",
    " 529",
)


def has_chat_template(model_dir: Path) -> bool:
    """Whether the submitted tokenizer carries its own template (recorded, never used)."""
    if (model_dir / "chat_template.jinja").is_file():
        return True
    config = model_dir / "tokenizer_config.json"
    try:
        return bool(json.loads(config.read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def check_collected(model_dir: Path, collected: Path) -> None:
    """Refuse (fatal) a folder that is not exactly what collect recorded in `collected`."""
    from posttrainbench.workspace.collect import verify_copy
    from posttrainbench.workspace.weight_set import WeightSetError, weight_set

    try:
        outcome = CollectOutcome.model_validate_json(collected.read_text())
    except (OSError, ValueError) as exc:
        msg = f"cannot read collect's record {collected}: {exc}"
        raise EvaluationError(msg, kind="fatal") from None
    changed = verify_copy(model_dir, outcome)
    if changed:
        raise EvaluationError(
            f"{model_dir} differs from what collect recorded (sha256): {', '.join(changed[:5])}",
            "something wrote into the collected model after collect",
            kind="fatal",
        )
    try:
        found = weight_set(model_dir)
    except WeightSetError as exc:
        raise EvaluationError(f"{model_dir}: {exc}", kind="fatal") from None
    if outcome.weights and found != outcome.weights:
        raise EvaluationError(
            f"{model_dir} holds the weight set {found}, not the recorded {outcome.weights}",
            kind="fatal",
        )


def classify(exc: BaseException) -> FailureKind:
    """What a failed evaluation means for the ladder: `pathology` (the model: OOM, runaway
    generations, a crash in generate) steps down, `infrastructure` (a judge or server outage)
    retries the same step, `fatal` (bad input: no data, unloadable folder) stops."""
    if isinstance(exc, DataUnavailableError | ConfigError):
        return "fatal"
    if isinstance(exc, EvaluationError) and exc.kind is not None:
        return exc.kind
    text = f"{type(exc).__name__}: {exc}".lower()
    if any(m in text for m in _OOM_MARKERS):
        return "pathology"
    if any(m in text for m in _INFRA_MARKERS):
        return "infrastructure"
    if any(m in text for m in _BAD_INPUT_MARKERS):
        return "fatal"
    return "pathology"


def model_request(
    info: BenchmarkInfo,
    model_dir: Path,
    *,
    template_family: str | None,
    tokenizer_dir: Path | None,
    batch_size: int | None,
    base_url: str | None,
    sampling: SamplingDefaults | None = None,
) -> ModelRequest:
    """What the backend serves: the model with its family's template and stop tokens, sampling
    as `sampling` (greedy where None)."""
    return ModelRequest(
        model_dir=model_dir,
        sampling=sampling,
        template_file=template_path(template_family, tools=info.tools) if template_family else None,
        stop_tokens=family(template_family).stop if template_family else (),
        tokenizer_dir=tokenizer_dir,
        tools=info.tools,
        batch_size=batch_size,
        base_url=base_url,
    )


# inspect's own defaults redraw a display and flush every sample to the log as it ends; the
# harness needs neither (the log is written once, at the end)
INSPECT_SETTINGS: dict[str, Any] = {"display": "none", "log_realtime": False}


def run_task(task: Any, req: ModelRequest, backend: str, log_dir: Path) -> Any:
    """The inspect task run on the model as the backend serves it: its log. A model that
    cannot even be loaded is EvaluationError."""
    model, served = _loaded(req, backend)
    # loaded once per process (inspect memoizes it), then seeded: every seed's sampler
    # starts from its seed, whether the model was just loaded or reused
    if req.seed is not None:
        from transformers import set_seed

        set_seed(req.seed)
    return _inspect([task], model, served, req, log_dir)[0]


def run_tasks(
    tasks: list[Any], seeds: list[int], req: ModelRequest, backend: str, log_dir: Path
) -> tuple[bool, Iterator[Any]]:
    """A benchmark's evaluations, one task per evaluation seed: whether they run together,
    and each one's log (or the PtbError it raised), in order. Together, where the loaded
    model draws every sample from its task's seed (the engine): their samples share the batch
    and one seed's longest answers overlap the others' instead of each seed waiting out its
    own. Otherwise in turn (run_task), each evaluated only once the previous one is read, so a
    failed first seed stops the rest."""
    if len(tasks) > 1:
        model, served = _loaded(req, backend)
        if BACKENDS.get(resolve_backend(backend)).runs_seeds_together(model.api):
            from inspect_ai.model import GenerateConfig
            from transformers import set_seed

            set_seed(seeds[0])  # whatever else draws from the process's generator
            for task, seed in zip(tasks, seeds, strict=True):
                task.config = task.config.merge(GenerateConfig(seed=seed))
            logs = _inspect(tasks, model, served, req, log_dir, max_tasks=len(tasks))
            return True, iter(logs)

    def in_turn() -> Iterator[Any]:
        for task, seed in zip(tasks, seeds, strict=True):
            try:
                yield run_task(task, req.model_copy(update={"seed": seed}), backend, log_dir)
            except PtbError as exc:
                yield exc

    return False, in_turn()


def _loaded(req: ModelRequest, backend: str) -> tuple[Any, ModelSpec]:
    """The model as the backend serves it (inspect memoizes it: loaded once per process)."""
    from inspect_ai.model import get_model

    served = BACKENDS.get(resolve_backend(backend)).model(req)
    try:
        model = get_model(served.name, base_url=served.base_url, **served.args)
    except PtbError:
        raise
    except Exception as exc:  # loading a broken model raises before inspect can log it
        raise _not_evaluated(req, exc) from exc
    _known_to_inspect(str(model))
    return model, served


def _known_to_inspect(name: str) -> None:
    """Registers the name the model's events carry: inspect resolves a name its model database
    lacks (for its usage notices) by building the provider again, from the name alone: a second
    copy of the model, or hub look-ups with retries."""
    from inspect_ai.model import ModelInfo, set_model_info

    set_model_info(name, ModelInfo(model=name))


def _inspect(
    tasks: list[Any], model: Any, served: ModelSpec, req: ModelRequest, log_dir: Path, **more: Any
) -> list[Any]:
    from inspect_ai import eval as inspect_eval

    if served.extra_body:
        from inspect_ai.model import GenerateConfig

        for task in tasks:
            extra = {**(task.config.extra_body or {}), **served.extra_body}
            task.config = task.config.merge(GenerateConfig(extra_body=extra))
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        return list(
            inspect_eval(
                tasks,
                model=model,
                log_dir=str(log_dir),
                max_connections=served.max_connections,
                fail_on_error=True,
                log_samples=True,
                score_display=False,
                **INSPECT_SETTINGS,
                **more,
            )
        )
    except PtbError:
        raise
    except Exception as exc:
        raise _not_evaluated(req, exc) from exc


def _not_evaluated(req: ModelRequest, exc: Exception) -> EvaluationError:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return EvaluationError(
        f"cannot evaluate {req.model_dir}: {type(exc).__name__}: {first}", kind=classify(exc)
    )


def evaluation_seeds(run_seed: int, count: int) -> list[int]:
    """The evaluation seeds of a run: its own seed first (one seed: the run's, as before
    suites), then seeds derived from it, so runs with other seeds draw other evaluation seeds."""
    from posttrainbench.evaluate.benchmarks.base import sample_seed

    return [run_seed] + [sample_seed(run_seed, "evaluation-seed", i) for i in range(1, count)]


def evaluate_model(
    model_dir: Path,
    benchmark: str,
    out_dir: Path,
    *,
    split: str = "test",
    limit: int | None = None,
    template_family: str | None = None,
    tokenizer_dir: Path | None = None,
    collected: Path | None = None,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    seed: int = 0,
    suite: str | None = None,
    seeds: int | None = None,
    judge_model: str | None = None,
    judge_base_url: str | None = None,
    backend: str = "auto",
    base_url: str | None = None,
) -> EvalMetrics:
    """Evaluate once per evaluation seed of the suite's policy for this benchmark (`seeds`
    overrides the count); the score is the mean over the seeds that scored. The first seed's
    failure raises (the ladder reruns the whole evaluation); a later seed's failure is recorded
    in metrics.json and left out of the mean."""
    from posttrainbench.evaluate.benchmarks.base import TaskOptions

    if collected is not None:
        check_collected(model_dir, collected)
    backend = resolve_backend(backend)
    info = BENCHMARKS.get(benchmark)
    chosen = suite_named(suite)
    policy = chosen.seed_policy(benchmark)
    sampling = model_sampling(model_dir)
    count = seeds or policy.seeds_for(greedy=sampling.greedy)
    started = time.monotonic()
    req = model_request(
        info, model_dir, template_family=template_family, tokenizer_dir=tokenizer_dir,
        batch_size=batch_size, base_url=base_url, sampling=sampling,
    )  # fmt: skip
    options = TaskOptions(
        split=split,
        limit=limit,
        max_tokens=max_tokens,
        sampling=sampling,
        judge_model=judge_model,
        judge_base_url=judge_base_url,
    )
    scores, logs, task_max_tokens, together = _run_seeds(
        info, options, evaluation_seeds(seed, count), policy.shuffles_choices, req, backend, out_dir
    )
    scored = [s for s in scores if s.score is not None]
    samples = [sample for log in logs for sample in (log.samples or [])]
    metrics = EvalMetrics(
        benchmark=benchmark,
        benchmark_version=info.version,
        split=split,
        metric=info.metric,
        score=math.fsum(s.score or 0.0 for s in scored) / len(scored),
        n_samples=scored[0].n_samples,
        n_failed=sum(s.n_failed for s in scored),
        model_path=str(model_dir),
        log_file=scored[0].log_file,
        params={
            **_params(model_dir, template_family, tokenizer_dir, limit, backend, req, samples),
            "seeds_run": ("together" if together else "in turn") if len(scores) > 1 else None,
        },
        backend=backend,
        template_family=template_family,
        decoding=decoding_of(sampling, task_max_tokens),
        max_tokens=task_max_tokens,
        seed=seed,
        suite=chosen.id,
        sampling=sampling,
        seeds=scores,
        datasets=dataset_labels(info),
        judge=judge_usage(samples, judge_model),
        duration_s=round(time.monotonic() - started, 2),
    )
    write_json(EvalPaths(out_dir).metrics, metrics)
    return metrics


def _run_seeds(
    info: BenchmarkInfo,
    options: TaskOptions,
    values: list[int],
    shuffles: bool,
    req: ModelRequest,
    backend: str,
    out_dir: Path,
) -> tuple[list[SeedScore], list[Any], int | None, bool]:
    """Each seed's evaluation: its score (or error) and its log, the tasks' max_tokens and
    whether the seeds ran together. The first seed's failure raises; a later one's is
    recorded. `shuffles`: the seed also shuffles the answer choices."""
    from posttrainbench.evaluate.benchmarks.base import make_task

    options_of = [
        options.model_copy(update={"seed": v, "choice_seed": v if shuffles else None})
        for v in values
    ]
    tasks = [make_task(info.implementation(), opts) for opts in options_of]
    together, outcomes = run_tasks(tasks, values, req, backend, out_dir)
    scores: list[SeedScore] = []
    logs: list[Any] = []
    for number, (value, opts, outcome) in enumerate(zip(values, options_of, outcomes, strict=True)):
        try:
            if isinstance(outcome, PtbError):
                raise outcome
            scores.append(seed_score(outcome, info, value, opts.judge_model))
        except PtbError as exc:
            if number == 0:
                raise
            scores.append(SeedScore(seed=value, error=str(exc).splitlines()[0][:300]))
            continue
        logs.append(outcome)
    return scores, logs, tasks[-1].config.max_tokens if tasks else None, together


def _params(
    model_dir: Path,
    template_family: str | None,
    tokenizer_dir: Path | None,
    limit: int | None,
    backend: str,
    req: ModelRequest,
    samples: list[Any],
) -> dict[str, str | int | float | None]:
    """metrics.json's `params`: how the model was asked and its code run."""
    return {
        "limit": limit,
        "batch_size": BACKENDS.get(backend).batch_size(req),
        "own_template": ("present, ignored" if has_chat_template(model_dir) else "none")
        if template_family
        else None,
        "tokenizer": str(tokenizer_dir) if tokenizer_dir else OWN_TOKENIZER,
        **BACKENDS.get(backend).describe(req),
        **code_isolation(samples),
    }


def seed_score(log: Any, info: BenchmarkInfo, seed: int, judge_model: str | None) -> SeedScore:
    """One seed's result from its inspect log; a failed log raises EvaluationError."""
    if log.status != "success" or not log.results or not log.results.scores:
        detail = log.error.message if log.error else f"status {log.status}"
        kind = classify(RuntimeError(detail))
        raise EvaluationError(f"evaluation on {info.id} (seed {seed}) failed: {detail}", kind=kind)
    samples = log.samples or []
    judge = judge_usage(samples, judge_model)
    return SeedScore(
        seed=seed,
        score=read_metric(log.results.scores[0].metrics, info.metric, info.id),
        n_samples=log.results.completed_samples,
        n_failed=sum(1 for s in samples if s.error) + (judge.failed if judge else 0),
        log_file=str(log.location),
    )


def decoding_of(s: SamplingDefaults, max_tokens: int | None) -> dict[str, float | int | None]:
    """The sampling parameters every request carried."""
    return {
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "min_p": s.min_p,
        "repetition_penalty": s.repetition_penalty,
        "max_tokens": max_tokens,
    }


def dataset_labels(info: BenchmarkInfo) -> list[str]:
    """Each source with the revision actually read (a hub snapshot's commit) where known."""
    from posttrainbench.evaluate import data

    labels = []
    for src in info.sources:
        label = src.label
        if isinstance(src, HubSource) and src.revision is None:
            try:
                commit = data.snapshot_revision(data.hub_snapshot(src, info.id))
            except DataUnavailableError:
                commit = None
            if commit:
                label = f"{label}@{commit[:12]}"
        labels.append(label)
    return labels


def judge_usage(samples: list[Any], judge_model: str | None) -> JudgeUsage | None:
    """Sum of the judge usage the scorers put in each score's metadata under "judge"."""
    total: JudgeUsage | None = None
    for sample in samples:
        for score in (sample.scores or {}).values():
            meta = (score.metadata or {}).get("judge")
            if not isinstance(meta, dict):
                continue
            if total is None:
                total = JudgeUsage(model=str(meta.get("model") or judge_model or "?"))
            for key in ("calls", "cached", "failed", "input_tokens", "output_tokens"):
                setattr(total, key, getattr(total, key) + int(meta.get(key) or 0))
            cost = meta.get("cost_usd")
            if cost is not None:
                total.cost_usd = round((total.cost_usd or 0.0) + float(cost), 6)
    return total


def read_metric(metrics: Mapping[str, Any], name: str, benchmark: str) -> float:
    """The benchmark's declared metric from a scorer's results, as a fraction in [0, 1]."""
    if name not in metrics:
        raise EvaluationError(
            f"the scorer of {benchmark} reported {', '.join(sorted(metrics)) or 'no metrics'}, "
            f"not {name!r}",
            "the benchmark's `metric` must name one of its scorer's metrics",
            kind="fatal",
        )
    value = float(metrics[name].value)
    if not 0.0 <= value <= 1.0:
        raise EvaluationError(
            f"{benchmark}: metric {name} = {value} is not in [0, 1]", kind="fatal"
        )
    return value
