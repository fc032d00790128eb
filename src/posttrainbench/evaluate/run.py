"""Pristine evaluation of one model folder on one benchmark split, through inspect-ai.

Loads weights as safetensors only and never with remote code. The chat template is the model's
own when its tokenizer carries one, else the harness's template for the model's family. Writes
the inspect log and metrics.json into the output folder and returns the metrics.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from posttrainbench.catalog import BENCHMARKS
from posttrainbench.evaluate.chat_templates import read_template
from posttrainbench.records import EvalMetrics
from posttrainbench.results.store import write_json

METRIC = "accuracy"


class EvaluationFailed(RuntimeError):
    """inspect-ai ran but did not produce a score (load error, generation error, …)."""


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
) -> EvalMetrics:
    from inspect_ai import eval as inspect_eval

    info = BENCHMARKS.get(benchmark)
    task = info.task_factory()(split=split, limit=limit)
    model_args: dict[str, Any] = {
        "model_path": str(model_dir),
        "trust_remote_code": False,
        "use_safetensors": True,
        "do_sample": False,  # greedy: scores are reproducible
    }
    if template_family and not has_chat_template(model_dir):
        model_args["chat_template"] = read_template(template_family)
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
        raise EvaluationFailed(
            f"cannot evaluate {model_dir}: {type(exc).__name__}: {first}"
        ) from exc
    if log.status != "success" or not log.results or not log.results.scores:
        detail = log.error.message if log.error else f"status {log.status}"
        raise EvaluationFailed(f"evaluation of {model_dir} on {benchmark}/{split} failed: {detail}")
    score = float(log.results.scores[0].metrics[METRIC].value)
    metrics = EvalMetrics(
        benchmark=benchmark,
        split=split,
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
    write_json(out_dir / "metrics.json", metrics)
    return metrics
