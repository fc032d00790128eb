"""Decontamination: every text the agent trained on or produced, scanned for test items.

The benchmark's test items (`Benchmark.test_parts()`: question, answer) are indexed whole and
part by part, so a training record holding only an item's answer, or only its question, still
covers one entry. Scanned: the frozen workspace's, HOME's and /tmp's files (jsonl, json at any
depth, csv, parquet, arrow — datasets saved with `datasets` — txt, py …; token ids decoded with the
base model's tokenizer; compressed files and archives opened, bounded; the harness's own files
excepted: texts.py) and what the agent's tools returned in its trajectory. A record (line) whose
IDF-weighted n-gram coverage of an entry reaches the threshold is contamination; items too short
for n-grams (`arith`) are matched exactly after normalisation (short_items.py). The evidence
names the file, the line (and the record's JSON path or tensor row) and the item.

Every file that could not be scanned is listed with the reason. Data the scanner could not read
(a refused pickle, an archive past its caps, a binary of no known format …; not weights, not
installed packages) adding up to UNSCANNABLE_BYTES fails the check closed: a reviewer may clear
it with `ptb review`.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrainbench.catalog.benchmarks import HubSource
from posttrainbench.config import hub_cache
from posttrainbench.errors import PtbError
from posttrainbench.integrity.archives import Budget
from posttrainbench.integrity.base import Check, CheckContext, harness_file, result, vendored
from posttrainbench.integrity.frozen import agent_trees, load_manifest, read_inside
from posttrainbench.integrity.ngrams import DEFAULT_THRESHOLD, NgramIndex
from posttrainbench.integrity.short_items import ShortItemIndex
from posttrainbench.integrity.texts import (
    NOT_TEXT,
    READERS,
    Skipped,
    TextChunk,
    content_suffix,
    iter_texts,
    read_file,
)
from posttrainbench.integrity.token_texts import TokenDecoder
from posttrainbench.integrity.trees import agent_tree_texts
from posttrainbench.records import CheckResult, Evidence

MAX_EVIDENCE = 40
MAX_NOTES = 100
MIN_MATCHED = 3  # distinct n-grams: one shared calculation is not reuse
TRAJECTORY = "agent/trajectory.json"
UNSCANNABLE_BYTES = 10 << 20  # data left unread, in total, that fails the check closed
# Where a line is a line of code or prose, not a training record: a short item's question alone
# does not count there (an example in a prompt template), only with its answer.
_PROSE_SUFFIXES = frozenset(
    [
        ".py",
        ".sh",
        ".md",
        ".ipynb",
        ".js",
        ".ts",
        ".html",
        ".rst",
        ".tex",
        ".log",
        ".out",
        ".err",
        ".yaml",
        ".yml",
        ".toml",
        ".cfg",
        ".ini",
        ".jinja",
        ".j2",
    ]
)
# Unread files that may hold training data (pickles are never loaded); weights, images, shared
# objects are not counted.
_DATA_SUFFIXES = frozenset(READERS) | frozenset(
    [".gz", ".bz2", ".xz", ".zst", ".zip", ".tar", ".tgz", ".pkl", ".pickle", ".joblib"]
)
_TOOL_CACHES = (
    ".cache/pip",
    ".cache/uv",
    ".npm",
    ".triton",
    ".nv",
    ".cache/torch",
    ".cache/torch_extensions",
    ".cache/matplotlib",
    ".cache/fontconfig",
)
_INDEXES: dict[str, NgramIndex] = {}
_SHORT: dict[str, ShortItemIndex] = {}
_DECODERS: dict[Path, TokenDecoder | None] = {}


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


def short_index(ctx: CheckContext) -> ShortItemIndex:
    """The items whose whole text is too short for the n-gram index, matched exactly."""
    if ctx.bench.id not in _SHORT:
        short = {k for k in test_index(ctx).too_short if "#" not in k}
        parts = ctx.bench.implementation().test_parts() if short else iter(())
        _SHORT[ctx.bench.id] = ShortItemIndex.build(parts, short)
    return _SHORT[ctx.bench.id]


def base_decoder(ctx: CheckContext) -> TokenDecoder | None:
    """The base model's tokenizer (token ids the agent saved are decoded with it); None when the
    base has none here."""
    try:
        folder = ctx.model.locate(ctx.settings.models_dir)
    except PtbError:
        return None
    if folder not in _DECODERS:
        _DECODERS[folder] = TokenDecoder.from_model(folder)
    return _DECODERS[folder]


@dataclass
class _Scan:
    """What one run of the check has found so far."""

    index: NgramIndex
    short: ShortItemIndex
    threshold: float
    evidence: list[Evidence] = field(default_factory=list)
    scanned: int = 0

    def add(self, chunk: TextChunk, kind: str = "file") -> list[Evidence]:
        self.scanned += len(chunk.data)
        found = _evidence(self.index, chunk, kind, self.threshold)
        found += _short_evidence(self.short, chunk, kind)
        self.evidence += found
        return found


def _where(chunk: TextChunk, line: int, kind: str) -> tuple[int, str]:
    number = chunk.first_line + line
    if kind == "step":
        return number, f"step {number}"
    label = chunk.labels[line] if chunk.labels and line < len(chunk.labels) else None
    return number, f"{chunk.path}:{number}" + (f" ({label})" if label else "")


def _item_evidence(
    chunk: TextChunk, kind: str, line: int, item: str, score: float, how: str, excerpt: bytes
) -> Evidence:
    number, where = _where(chunk, line, kind)
    return Evidence(
        kind="step" if kind == "step" else "test_item",
        path=chunk.path,
        line=number if kind != "step" else None,
        step=number if kind == "step" else None,
        item=item,
        score=round(score, 3),
        summary=f"test item {item} in {where} ({how})",
        excerpt=" ".join(excerpt[:200].decode(errors="replace").split()),
    )


def _eval_log(path: str) -> bool:
    """A sample of an inspect evaluation log (what the workspace's evaluate.py writes)."""
    return ".eval!" in path


def _evidence(index: NgramIndex, chunk: TextChunk, kind: str, threshold: float) -> list[Evidence]:
    best: dict[tuple[int, str], float] = {}
    answered: set[tuple[int, str]] = set()
    for hit in index.scan(chunk.data, min_coverage=threshold):
        if hit.matched < MIN_MATCHED:
            continue
        item, _, part = hit.key.partition("#")
        key = (hit.line, item)
        if part not in ("", "0"):
            answered.add(key)
        best[key] = max(best.get(key, 0.0), hit.coverage)
    if _eval_log(chunk.path):
        # The agent is given the test questions (eval_data/) and evaluates on them: its logs
        # repeat them. Only an answer found there is evidence.
        best = {key: cov for key, cov in best.items() if key in answered}
    lines = chunk.data.split(b"\n") if best else []
    return [
        _item_evidence(chunk, kind, line, item, cov, f"coverage {cov:.2f}", lines[line])
        for (line, item), cov in sorted(best.items())
    ]


def _short_evidence(short: ShortItemIndex, chunk: TextChunk, kind: str) -> list[Evidence]:
    if not len(short):
        return []
    name = chunk.path.rsplit("!", 1)[-1]
    alone = kind != "step" and Path(name).suffix.lower() not in _PROSE_SUFFIXES
    alone = alone and not _eval_log(chunk.path)  # its own evaluation repeats the question
    hits = short.scan(chunk.data, alone_counts=alone)
    lines = chunk.data.split(b"\n") if hits else []
    return [
        _item_evidence(
            chunk,
            kind,
            hit.line,
            hit.key,
            1.0,
            "exact, the question as a whole record" if hit.alone else "exact, with its answer",
            lines[hit.line],
        )
        for hit in hits
    ]


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
    ctx: CheckContext, skipped: list[Skipped], notes: list[Evidence], **read: Any
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
        yield from _contained_texts(real, root, f.path, skipped, **read)


def _contained_texts(
    real: Path, root: Path, rel: str, skipped: list[Skipped], **read: Any
) -> Iterator[TextChunk]:
    """Texts of a file or folder inside `root`; links under it (the hub cache's snapshot files
    are links to its blobs) are followed only to regular files that stay inside `root`."""
    if _regular(real):
        suffix = content_suffix(real, rel)
        yield from read_file(real, rel, skipped=skipped, suffix=suffix, **read)
        return
    for dirpath, _, names in os.walk(real, followlinks=False):
        for name in sorted(names):
            path = Path(dirpath) / name
            target = Path(os.path.realpath(path))
            inside = f"{rel}/{path.relative_to(real).as_posix()}"
            if target.is_relative_to(root) and _regular(target):
                suffix = content_suffix(target, inside)
                yield from read_file(target, inside, skipped=skipped, suffix=suffix, **read)
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
    short = short_index(ctx)
    found: list[Evidence] = []
    for path in files:
        rel = path.relative_to(ctx.frozen).as_posix()
        data = read_inside(ctx.frozen, rel).replace(b"\r", b"")
        chunk = TextChunk(path=rel, first_line=1, data=data)
        found += _evidence(index, chunk, "file", threshold or DEFAULT_THRESHOLD)
        found += _short_evidence(short, chunk, "file")
    return found


def scan_one_file(ctx: CheckContext, path: Path, name: str) -> tuple[list[Evidence], list[Skipped]]:
    """One file outside the run directory, as the check would read it (the agent's own
    check_data.py, evaluate/data_check.py): its evidence and what could not be read."""
    scan = _Scan(test_index(ctx), short_index(ctx), DEFAULT_THRESHOLD)
    skipped: list[Skipped] = []
    for chunk in read_file(path, name, skipped=skipped, decoder=base_decoder(ctx)):
        scan.add(chunk)
    return scan.evidence, skipped


def _unscanned(ctx: CheckContext, skipped: list[Skipped]) -> list[Skipped]:
    """Every file left unread: what the readers skipped, and what the frozen copies only listed
    (weights, pickles, files past the copy's caps, FIFOs …), one entry a path; links are
    listed with their targets elsewhere."""
    out = {s.path: s for s in skipped if s.reason != "symlink"}
    trees = [("", ctx.manifest)] + [
        (f"{name}/", load_manifest(folder)) for name, folder in agent_trees(ctx.paths)
    ]
    for prefix, manifest in trees:
        for f in manifest.files:
            if f.kind in ("copied", "symlink") or (not prefix and harness_file(f.path)):
                continue
            path = prefix + f.path
            out.setdefault(path, Skipped(path, f.reason or f.kind, f.size))
    return sorted(out.values(), key=lambda s: s.path)


def data_like(s: Skipped) -> bool:
    """Whether an unread file may hold training data: not the model, not installed packages or
    tool caches, not weights or images, but data formats, pickles and binaries of no known
    format (an archive member by its own name)."""
    if s.path.startswith("final_model/") or vendored(s.path) or _tool_cache(s.path):
        return False
    name = s.path.rsplit("!", 1)[-1].lower()
    if s.reason == "weights or pickle":
        return Path(name).suffix in {".pkl", ".pickle", ".joblib"}
    if s.reason.startswith(NOT_TEXT):
        return True
    return s.reason != "binary" and any(name.endswith(suffix) for suffix in _DATA_SUFFIXES)


def _tool_cache(path: str) -> bool:
    """Caches of installers and compilers in HOME or /tmp (pip's wheels, compiled kernels):
    what they hold is software, read by the home check, not training data."""
    padded = f"/{path}"
    if any(part.startswith("pip-") for part in path.split("/")[:-1]):
        return True  # pip's build and unpack folders in /tmp
    return any(f"/{folder}/" in padded for folder in _TOOL_CACHES)


def _unscanned_evidence(unscanned: list[Skipped]) -> tuple[list[Evidence], Evidence | None]:
    """Notes for the files left unread (data first, largest first), and the decisive finding
    when the data among them reaches UNSCANNABLE_BYTES."""
    ranked = sorted(unscanned, key=lambda s: (not data_like(s), -s.size, s.path))
    notes = [
        Evidence(
            kind="file",
            path=s.path,
            decisive=False,
            summary=f"not scanned: {s.reason}" + (f" ({s.size:,} bytes)" if s.size else ""),
        )
        for s in ranked[:MAX_NOTES]
    ]
    data = [s for s in unscanned if data_like(s)]
    total = sum(s.size for s in data)
    if total < UNSCANNABLE_BYTES:
        return notes, None
    names = ", ".join(s.path for s in sorted(data, key=lambda s: -s.size)[:3])
    return notes, Evidence(
        kind="file",
        path=max(data, key=lambda s: s.size).path,
        summary=(
            f"unscannable: {len(data)} data file(s), {total / 2**20:.1f} MiB, could not be "
            f"scanned for test items ({names}); failed closed until a reviewer clears it "
            "(ptb review)"
        ),
    )


class DecontaminationCheck(Check):
    name = "decontamination"

    def run(self, ctx: CheckContext) -> CheckResult:
        from posttrainbench.workspace.builder import HARNESS_PATHS

        scan = _Scan(test_index(ctx), short_index(ctx), DEFAULT_THRESHOLD)
        decoder = base_decoder(ctx)
        read: dict[str, Any] = {"decoder": decoder, "budget": Budget()}
        skipped: list[Skipped] = []
        start = time.perf_counter()
        for chunk in iter_texts(ctx.frozen, exclude=HARNESS_PATHS, skipped=skipped, **read):
            scan.add(chunk)
        for chunk in agent_tree_texts(ctx.paths, skipped, **read):  # HOME, /tmp: home/…, tmp/…
            scan.add(chunk)
        links: list[Evidence] = []
        for chunk in _linked_texts(ctx, skipped, links, **read):
            scan.add(chunk)
        for chunk, authored in _trajectory_chunks(ctx.steps):
            for e in scan.add(chunk, "step"):
                e.decisive = authored
                if not authored:
                    e.summary += " (a tool's output)"
        seconds = time.perf_counter() - start
        evidence = sorted(scan.evidence, key=lambda e: not e.decisive)
        decisive = [e for e in evidence if e.decisive]
        items = sorted({e.item for e in decisive if e.item})
        unscanned = _unscanned(ctx, skipped)
        notes, closed = _unscanned_evidence(unscanned)
        reasons = (
            [f"{len(items)} test item(s) found in {len({e.path for e in decisive})} file(s)"]
            if decisive
            else []
        )
        if closed is not None:
            reasons.append(closed.summary)
            evidence.insert(min(len(decisive), MAX_EVIDENCE - 1), closed)
        return result(
            self.name,
            evidence[:MAX_EVIDENCE] + notes + links,
            reasons=reasons + [e.summary for e in decisive[:5]],
            figures={
                "bytes_scanned": scan.scanned,
                "seconds": round(seconds, 3),
                "entries_indexed": len(scan.index),
                "short_items_indexed": len(scan.short),
                "items_found": len(items),
                "threshold": scan.threshold,
                "decompressed_bytes": read["budget"].used,
                "token_decoder": 1.0 if decoder is not None else 0.0,
                "unscanned_files": len(unscanned),
                "unscanned_data_bytes": sum(s.size for s in unscanned if data_like(s)),
            },
        )
