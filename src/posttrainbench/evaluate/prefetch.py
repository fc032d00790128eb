"""`ptb data prefetch`: fill the caches the evaluation reads, where there is network.

Benchmarks' sources go to the hub cache (hub datasets) or the data cache (pinned URLs);
models (base models, their instruct twins) to the hub cache. Each item is reported on its own
line; a failure does not stop the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel

from posttrainbench.catalog import BENCHMARKS, MODELS


class Fetched(BaseModel):
    what: str
    path: Path | None = None
    error: str | None = None


def check_reachable(benchmarks: list[str], models: list[str]) -> None:
    """Raise NoNetworkError at once (one line) unless the hub and every URL host these items
    come from can be reached, instead of each download retrying for half a minute."""
    from posttrainbench.catalog.benchmarks import HubSource
    from posttrainbench.offline import hub_online, require_network

    hub_online()  # the one command that downloads
    sources = [src for b in benchmarks for src in BENCHMARKS.get(b).sources]
    downloads_models = any(name not in MODELS or MODELS.get(name).hf_id for name in models)
    if downloads_models or any(isinstance(src, HubSource) for src in sources):
        require_network("ptb data prefetch cannot reach the Hugging Face hub")
    hosts = {urlsplit(src.url).netloc: src.url for src in sources if not isinstance(src, HubSource)}
    for host, url in sorted(hosts.items()):
        require_network(f"ptb data prefetch cannot reach {host}", url)


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


# What the hub client and httpx raise when the network went away mid-prefetch.
_NETWORK_ERRORS = ("LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectError",
                   "ConnectionError", "ConnectTimeout", "ReadTimeout")  # fmt: skip


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if type(exc).__name__ in _NETWORK_ERRORS:
        return f"no network: {first}"[:300]
    return f"{type(exc).__name__}: {first}"[:300]
