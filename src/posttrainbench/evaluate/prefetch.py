"""`ptb data prefetch`: fill the caches the evaluation reads, where there is network.

Benchmarks' sources go to the hub cache (hub datasets) or the data cache (pinned URLs);
models (base models, their instruct twins) to the hub cache. Each item is reported on its own
line; a failure does not stop the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from posttrainbench.catalog import BENCHMARKS, MODELS


class Fetched(BaseModel):
    what: str
    path: Path | None = None
    error: str | None = None


def prefetch_benchmark(benchmark: str) -> Iterator[Fetched]:
    from posttrainbench.evaluate import data

    info = BENCHMARKS.get(benchmark)
    for src in info.sources:
        try:
            yield Fetched(what=f"{info.id}: {src.label}", path=data.prefetch(src, info.id))
        except Exception as exc:
            yield Fetched(what=f"{info.id}: {src.label}", error=_one_line(exc))


def prefetch_model(name: str, *, instruct: bool = True) -> Iterator[Fetched]:
    from huggingface_hub import snapshot_download

    from posttrainbench.config import hub_cache

    repos = [name]
    if name in MODELS:
        m = MODELS.get(name)
        if m.hf_id is None:
            return  # built in: nothing to download
        repos = [m.hf_id] + ([m.instruct] if instruct and m.instruct else [])
    for repo in repos:
        try:
            path = snapshot_download(repo, cache_dir=hub_cache())
            yield Fetched(what=f"model: {repo}", path=Path(path))
        except Exception as exc:
            yield Fetched(what=f"model: {repo}", error=_one_line(exc))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
