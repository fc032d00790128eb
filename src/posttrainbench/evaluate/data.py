"""Benchmark data read offline: the standard Hugging Face hub cache and a checksummed data cache.

Loaders never download. Hub datasets are read from the snapshot folders that `hf download
--repo-type dataset REPO` (or `ptb data prefetch`) leaves under `HF_HOME`; files that are not on
the hub live in `<cache>/data/<benchmark>/` and are checked against the sha256 the catalog pins.
`prefetch` is the one function here that uses the network.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from posttrainbench.catalog.benchmarks import BenchmarkInfo, DataSource, HubSource, UrlSource
from posttrainbench.config import hub_cache
from posttrainbench.errors import DataUnavailableError
from posttrainbench.evaluate.judge import require_judge

Row = dict[str, Any]


def _prefetch_hint(benchmark: str | None, what: str) -> str:
    where = f"ptb data prefetch --benchmarks {benchmark}" if benchmark else "ptb data prefetch"
    return f"run `{where}` where there is network ({what}); HF_HOME and PTB_CACHE select caches"


def hub_snapshot(src: HubSource, benchmark: str | None = None) -> Path:
    """The local snapshot folder of a hub repository, at its pinned revision."""
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                src.repo,
                repo_type=src.repo_type,
                revision=src.revision,
                local_files_only=True,
                cache_dir=hub_cache(),
            )
        )
    except Exception as exc:  # LocalEntryNotFoundError, a missing revision, an unreadable cache
        gated = " (gated: accept its terms on the hub and log in first)" if src.gated else ""
        raise DataUnavailableError(
            f"{src.label} is not in the local Hugging Face cache{gated}",
            _prefetch_hint(benchmark, f"or `hf download --repo-type {src.repo_type} {src.repo}`"),
        ) from exc


def snapshot_files(root: Path, patterns: tuple[str, ...] | list[str]) -> list[Path]:
    """Files of a snapshot whose path relative to it matches any glob pattern, sorted."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and any(fnmatch.fnmatch(rel, p) for p in patterns):
            found.append(path)
    return found


def read_rows(path: Path) -> list[Row]:
    """Rows of a parquet, JSON-lines (optionally gzipped) or JSON-array file."""
    name = path.name
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows: list[Row] = pq.read_table(path).to_pylist()
        return rows
    if name.endswith(".gz"):
        import gzip

        text = gzip.decompress(path.read_bytes()).decode("utf-8")
        name = name[:-3]
    else:
        text = path.read_text(encoding="utf-8")
    if name.endswith(".jsonl") or (name.endswith(".json") and not text.lstrip().startswith("[")):
        # split on newlines only: rows may hold U+2028, which str.splitlines() breaks on
        return [json.loads(line) for line in text.split("\n") if line.strip()]
    data = json.loads(text)
    if not isinstance(data, list):
        raise DataUnavailableError(f"{path} holds a JSON {type(data).__name__}, not rows")
    return data


def hub_rows(src: HubSource, patterns: tuple[str, ...], benchmark: str | None = None) -> list[Row]:
    """All rows of the snapshot's files matching the patterns, in file order."""
    root = hub_snapshot(src, benchmark)
    files = snapshot_files(root, patterns)
    if not files:
        raise DataUnavailableError(
            f"{src.label} is in the cache but has no file matching {', '.join(patterns)}",
            _prefetch_hint(benchmark, "the snapshot looks incomplete"),
        )
    return [row for f in files for row in read_rows(f)]


def snapshot_revision(path: Path) -> str | None:
    """The commit of a hub snapshot folder (its name), for the record."""
    return path.name if path.parent.name == "snapshots" else None


def data_dir(benchmark: str) -> Path:
    from posttrainbench.config import load_settings

    return load_settings().data_dir / benchmark


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _expected_digest(src: UrlSource, path: Path) -> str | None:
    """The catalog's pin; for a file the catalog cannot pin yet (sha256 ""), the digest
    recorded beside it when it was first fetched (trust on first use)."""
    if src.sha256:
        return src.sha256
    recorded = path.with_name(path.name + ".sha256")
    return recorded.read_text().strip() if recorded.is_file() else None


def _record_digest(path: Path, digest: str) -> None:
    path.with_name(path.name + ".sha256").write_text(digest + "\n")


def url_file(src: UrlSource, benchmark: str) -> Path:
    """The pinned upstream file in the data cache, checked against its sha256."""
    path = data_dir(benchmark) / src.name
    if not path.is_file():
        raise DataUnavailableError(
            f"{src.name} ({src.url}) is not in the data cache {path.parent}",
            _prefetch_hint(benchmark, "it is fetched from its upstream URL"),
        )
    digest = sha256_file(path)
    expected = _expected_digest(src, path)
    if expected is None:  # placed by hand, never pinned: its digest is the one from now on
        _record_digest(path, digest)
        expected = digest
    if digest != expected:
        raise DataUnavailableError(
            f"{path} has sha256 {digest[:12]}…, not the pinned {expected[:12]}…",
            "delete it and prefetch again; upstream may have changed the file",
        )
    return path


def check_cached(sources: tuple[DataSource, ...], benchmark: str) -> None:
    """Raise DataUnavailableError (with the prefetch hint) unless every source is cached."""
    for src in sources:
        if isinstance(src, HubSource):
            hub_snapshot(src, benchmark)
        else:
            url_file(src, benchmark)


def prefetch(src: DataSource, benchmark: str) -> Path:
    """Download one source into its cache (hub cache or data cache); network required."""
    if isinstance(src, HubSource):
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                src.repo,
                repo_type=src.repo_type,
                revision=src.revision,
                allow_patterns=list(src.files) or None,
                cache_dir=hub_cache(),
            )
        )
    import httpx

    dest = data_dir(benchmark) / src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{src.name}.")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f, httpx.stream("GET", src.url, follow_redirects=True) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                f.write(chunk)
        digest = sha256_file(tmp)
        if src.sha256 and digest != src.sha256:
            raise DataUnavailableError(
                f"{src.url} has sha256 {digest[:12]}…, not the pinned {src.sha256[:12]}…",
                "upstream changed the file; the catalog's pin must be reviewed",
            )
        tmp.replace(dest)
        if not src.sha256:
            _record_digest(dest, digest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def check_evaluable(info: BenchmarkInfo, judge_model: str | None) -> None:
    """What an evaluation of `info` would refuse, checked before anything is made: a benchmark
    without an implementation, data not in the cache, a judged benchmark without a judge."""
    info.implementation()
    check_cached(info.sources, info.id)
    if info.judged:
        require_judge(judge_model, info.id)
