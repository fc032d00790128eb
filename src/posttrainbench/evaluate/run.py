"""Pristine evaluation of one model folder on one benchmark split, through inspect-ai.

Loads weights as safetensors only and never with remote code. The chat template is the model's
own when its tokenizer carries one, else the harness's template for the model's family. Writes
the inspect log and metrics.json into the output folder and returns the metrics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.errors import EvaluationError
from posttrainbench.evaluate.chat_templates import read_template
from posttrainbench.records import EvalMetrics
from posttrainbench.results.layout import EvalPaths
from posttrainbench.results.store import write_json


def has_chat_template(model_dir: Path) -> bool:
    if (model_dir / "chat_template.jinja").is_file():
        return True
    config = model_dir / "tokenizer_config.json"
    try:
        return bool(json.loads(config.read_text()).get("chat_template"))
    except (OSError, ValueError):
        return False


def evaluate_model(
    model_dir: Path,
    benchmark: str,
    out_dir: Path,
    *,
    split: str = "test",
    limit: int | None = None,
    template_family: str | None = None,
    batch_size: int = 64,
    max_tokens: int | None = None,
    seed: int = 0,
    judge_model: str | None = None,
    judge_base_url: str | None = None,
) -> EvalMetrics:
    from inspect_ai import eval as inspect_eval

    from posttrainbench.evaluate.benchmarks.base import TaskOptions, make_task

    info = BENCHMARKS.get(benchmark)
    opts = TaskOptions(
        split=split,
        limit=limit,
        max_tokens=max_tokens,
        seed=seed,
        judge_model=judge_model,
        judge_base_url=judge_base_url,
    )
    task = make_task(info.implementation(), opts)
    model_args: dict[str, Any] = {
        "model_path": str(model_dir),
        "trust_remote_code": False,
        "use_safetensors": True,
        "do_sample": False,  # greedy: scores are reproducible
    }
    if template_family:
        model_args["chat_template"] = read_template(template_family, tools=info.tools)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        log = inspect_eval(
            task,
            model=f"hf/{model_dir.name}",
            model_args=model_args,
            log_dir=str(out_dir),
            display="none",
            max_connections=batch_size,
            fail_on_error=True,
            log_samples=True,
        )[0]
    except Exception as exc:  # loading a broken model raises before inspect can log it
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise EvaluationError(
            f"cannot evaluate {model_dir}: {type(exc).__name__}: {first}"
        ) from exc
    if log.status != "success" or not log.results or not log.results.scores:
        detail = log.error.message if log.error else f"status {log.status}"
        raise EvaluationError(f"evaluation of {model_dir} on {benchmark}/{split} failed: {detail}")
    score = read_metric(log.results.scores[0].metrics, info.metric, benchmark)
    metrics = EvalMetrics(
        benchmark=benchmark,
        split=split,
        metric=info.metric,
        score=score,
        n_samples=log.results.completed_samples,
        model_path=str(model_dir),
        log_file=str(log.location),
        params={
            "limit": limit,
            "batch_size": batch_size,
            "harness_template": template_family if "chat_template" in model_args else None,
        },
        duration_s=round(time.monotonic() - started, 2),
    )
    write_json(EvalPaths(out_dir).metrics, metrics)
    return metrics


def read_metric(metrics: Mapping[str, Any], name: str, benchmark: str) -> float:
    """The benchmark's declared metric from a scorer's results, as a fraction in [0, 1]."""
    if name not in metrics:
        raise EvaluationError(
            f"the scorer of {benchmark} reported {', '.join(sorted(metrics)) or 'no metrics'}, "
            f"not {name!r}",
            "the benchmark's `metric` must name one of its scorer's metrics",
        )
    value = float(metrics[name].value)
    if not 0.0 <= value <= 1.0:
        raise EvaluationError(f"{benchmark}: metric {name} = {value} is not in [0, 1]")
    return value
