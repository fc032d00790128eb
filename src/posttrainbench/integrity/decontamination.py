"""Decontamination: every text the agent trained on or produced, scanned for test items.

The benchmark's test items (`Benchmark.test_parts()`: question, answer) are indexed whole and
part by part, so a training record holding only an item's answer, or only its question, still
covers one entry. Scanned: the frozen workspace's data and code files (jsonl, json, csv, parquet,
arrow — datasets saved with `datasets` — txt, py …; the harness's own files excepted) and what the
agent's tools returned in its trajectory. A record (line) whose IDF-weighted n-gram coverage of an
entry reaches the threshold is contamination; the evidence names the file, the line and the item.

Links are never followed into the host: a link out of the workspace is listed (evidence naming its
target), not read — save one into the hub-cache folder of the benchmark's own dataset (public data
the agent could train on, and the usual way to hide the test split), read there and nowhere else.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from posttrainbench.catalog.benchmarks import HubSource
from posttrainbench.config import hub_cache
from posttrainbench.integrity.base import Check, CheckContext, harness_file, result
from posttrainbench.integrity.frozen import read_inside
from posttrainbench.integrity.ngrams import DEFAULT_THRESHOLD, NgramIndex
from posttrainbench.integrity.texts import (
    Skipped,
    TextChunk,
    content_suffix,
    iter_texts,
    read_file,
)
from posttrainbench.records import CheckResult, Evidence

MAX_EVIDENCE = 40
MIN_MATCHED = 3  # distinct n-grams: one shared calculation is not reuse
TRAJECTORY = "agent/trajectory.json"
_INDEXES: dict[str, NgramIndex] = {}


def item_entries(parts: Iterator[tuple[str, tuple[str, ...]]]) -> Iterator[tuple[str, str]]:
    """Each item whole, and each of its parts (question, answer) on its own."""
    for item, texts in parts:
        yield item, "\n".join(texts)
        if len(texts) > 1:
            for k, text in enumerate(texts):
                yield f"{item}#{k}", text


def test_index(ctx: CheckContext) -> NgramIndex:
    if ctx.bench.id not in _INDEXES:
        parts = ctx.bench.implementation().test_parts()
        _INDEXES[ctx.bench.id] = NgramIndex.build(item_entries(parts))
    return _INDEXES[ctx.bench.id]


def _evidence(index: NgramIndex, chunk: TextChunk, kind: str, threshold: float) -> list[Evidence]:
    best: dict[tuple[int, str], float] = {}
    for hit in index.scan(chunk.data, min_coverage=threshold):
        if hit.matched < MIN_MATCHED:
            continue
        item = hit.key.split("#", 1)[0]
        key = (hit.line, item)
        best[key] = max(best.get(key, 0.0), hit.coverage)
    lines = chunk.data.split(b"\n") if best else []
    found = []
    for (line, item), coverage in sorted(best.items()):
        excerpt = lines[line][:200].decode(errors="replace")
        number = chunk.first_line + line
        where = f"step {number}" if kind == "step" else f"{chunk.path}:{number}"
        found.append(
            Evidence(
                kind="step" if kind == "step" else "test_item",
                path=chunk.path,
                line=number if kind != "step" else None,
                step=number if kind == "step" else None,
                item=item,
                score=round(coverage, 3),
                summary=f"test item {item} in {where} (coverage {coverage:.2f})",
                excerpt=" ".join(excerpt.split()),
            )
        )
    return found


def _trajectory_chunks(steps: list[dict[str, Any]]) -> Iterator[tuple[TextChunk, bool]]:
    """Per step, what the agent wrote (its message and tool-call arguments: decisive) and what its
    tools returned (context: reading the dev items through evaluate.py is allowed)."""
    for step in steps:
        number = int(step.get("step_id") or 0)
        wrote = [step.get("message") or ""] if step.get("source") == "agent" else []
        wrote += [json.dumps(c.get("arguments", {})) for c in step.get("tool_calls") or []]
        saw = [r.get("content") or "" for r in (step.get("observation") or {}).get("results", [])]
        for parts, decisive in ((wrote, True), (saw, False)):
            line = " ".join(" ".join(parts).split()).encode()
            if line:
                yield TextChunk(path=TRAJECTORY, first_line=number, data=line), decisive


def _dataset_roots(ctx: CheckContext) -> list[Path]:
    """The hub-cache folders of the benchmark's own datasets, links resolved."""
    hub = hub_cache()
    return [
        Path(os.path.realpath(hub / f"datasets--{src.repo.replace('/', '--')}"))
        for src in ctx.bench.sources
        if isinstance(src, HubSource) and src.repo_type == "dataset"
    ]


def _linked_texts(
    ctx: CheckContext, skipped: list[Skipped], notes: list[Evidence]
) -> Iterator[TextChunk]:
    """What the links out of the workspace point at, when that is the benchmark's own dataset in
    the hub cache (read there, contained, never run); any other link out is only listed. Targets
    are resolved by name (`realpath`: no file is opened to find where a link leads)."""
    frozen = Path(os.path.realpath(ctx.frozen))
    roots = _dataset_roots(ctx)
    for f in ctx.manifest.files:
        if f.kind != "symlink" or f.target is None or harness_file(f.path):
            continue
        real = Path(os.path.realpath(ctx.frozen / f.path))
        if real.is_relative_to(frozen):
            continue  # its target is in the frozen copy already
        root = next((r for r in roots if real.is_relative_to(r)), None)
        if root is None:
            notes.append(_link_note(f.path, f.target))
            continue
        yield from _contained_texts(real, root, f.path, skipped)


def _contained_texts(
    real: Path, root: Path, rel: str, skipped: list[Skipped]
) -> Iterator[TextChunk]:
    """Texts of a file or folder inside `root`; links under it (the hub cache's snapshot files
    are links to its blobs) are followed only to regular files that stay inside `root`."""
    if _regular(real):
        yield from read_file(real, rel, skipped=skipped, suffix=content_suffix(real, rel))
        return
    for dirpath, _, names in os.walk(real, followlinks=False):
        for name in sorted(names):
            path = Path(dirpath) / name
            target = Path(os.path.realpath(path))
            inside = f"{rel}/{path.relative_to(real).as_posix()}"
            if target.is_relative_to(root) and _regular(target):
                suffix = content_suffix(target, inside)
                yield from read_file(target, inside, skipped=skipped, suffix=suffix)
            else:
                skipped.append(Skipped(inside, "a link out of the benchmark's dataset"))


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _link_note(path: str, target: str) -> Evidence:
    return Evidence(
        kind="file",
        path=path,
        decisive=False,
        summary=f"a link out of the workspace, to {target}: listed, not read",
    )


def scan_files(
    ctx: CheckContext, files: list[Path], threshold: float | None = None
) -> list[Evidence]:
    """Contamination evidence for some files of the frozen workspace (model_files uses it)."""
    index = test_index(ctx)
    found: list[Evidence] = []
    for path in files:
        rel = path.relative_to(ctx.frozen).as_posix()
        data = read_inside(ctx.frozen, rel).replace(b"\r", b"")
        chunk = TextChunk(path=rel, first_line=1, data=data)
        found += _evidence(index, chunk, "file", threshold or DEFAULT_THRESHOLD)
    return found


class DecontaminationCheck(Check):
    name = "decontamination"

    def run(self, ctx: CheckContext) -> CheckResult:
        index = test_index(ctx)
        threshold = DEFAULT_THRESHOLD
        from posttrainbench.workspace.builder import HARNESS_PATHS

        skipped: list[Skipped] = []
        evidence: list[Evidence] = []
        scanned = 0
        start = time.perf_counter()
        for chunk in iter_texts(ctx.frozen, exclude=HARNESS_PATHS, skipped=skipped):
            scanned += len(chunk.data)
            evidence += _evidence(index, chunk, "file", threshold)
        links: list[Evidence] = []
        for chunk in _linked_texts(ctx, skipped, links):
            scanned += len(chunk.data)
            evidence += _evidence(index, chunk, "file", threshold)
        for chunk, authored in _trajectory_chunks(ctx.steps):
            scanned += len(chunk.data)
            found = _evidence(index, chunk, "step", threshold)
            for e in found:
                e.decisive = authored
                if not authored:
                    e.summary += " (a tool's output)"
            evidence += found
        seconds = time.perf_counter() - start
        evidence.sort(key=lambda e: not e.decisive)
        decisive = [e for e in evidence if e.decisive]
        items = sorted({e.item for e in decisive if e.item})
        notes = [
            Evidence(kind="file", path=f.path, decisive=False, summary=f"not scanned: {f.reason}")
            for f in ctx.manifest.files
            if f.kind == "listed" and f.reason != "weights or pickle"
        ] + links
        reasons = (
            [f"{len(items)} test item(s) found in {len({e.path for e in decisive})} file(s)"]
            if decisive
            else []
        )
        return result(
            self.name,
            evidence[:MAX_EVIDENCE] + notes,
            reasons=reasons + [e.summary for e in decisive[:5]],
            figures={
                "bytes_scanned": scanned,
                "seconds": round(seconds, 3),
                "entries_indexed": len(index),
                "items_found": len(items),
                "threshold": threshold,
            },
        )
