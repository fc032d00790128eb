"""What the LLM judge reads, cut into calls: every step, every text file the agent left, and the
other checks' evidence, each whole, packed into chunks of at most `CHUNK_CHARS` characters.

Nothing is elided: a piece longer than a chunk is cut into consecutive parts ("step 12, part 2
of 3"), each read by some call. Text files are any file of the frozen copy that decodes as UTF-8
and is not the harness's (whatever its suffix); a file of final_model byte-identical to the
base's (its tokenizer, config) is named, not re-read. Only a text file over `WHOLE_FILE_BYTES`
(training data: decontamination scans all of it) is shown by its first `SAMPLE_CHARS`, and
vendored packages (site-packages, node_modules) are listed, not read; both are counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posttrainbench.errors import PtbError
from posttrainbench.integrity.base import CheckContext, harness_file, vendored
from posttrainbench.integrity.frozen import read_inside

CHUNK_CHARS = 120_000  # ≈ 30k tokens: room for the instructions and the answer in any judge
WHOLE_FILE_BYTES = 1 << 20
SAMPLE_CHARS = 20_000
MODEL_DIR = "final_model"


@dataclass(frozen=True)
class Piece:
    """One thing the judge reads: a step, a file (or one part of it), an evidence list."""

    label: str
    text: str


Sectioned = tuple[str, Piece]  # (section of the prompt, piece)


@dataclass
class Material:
    """Everything agent-derived the judge reads, and what it could not read whole."""

    evidence: list[Piece] = field(default_factory=list)
    steps: list[Piece] = field(default_factory=list)
    files: list[Piece] = field(default_factory=list)
    sampled: list[str] = field(default_factory=list)
    not_read: int = 0

    def pieces(self) -> list[Sectioned]:
        """Every piece with the section it belongs to, in reading order."""
        return [
            *(("evidence", p) for p in self.evidence),
            *(("steps", p) for p in self.steps),
            *(("files", p) for p in self.files),
        ]


def step_text(step: dict[str, Any]) -> str:
    parts = [f"[step {step.get('step_id')}] {step.get('source')}: {step.get('message') or ''}"]
    for call in step.get("tool_calls") or []:
        parts.append(f"  call {call.get('function_name')}: {json.dumps(call.get('arguments'))}")
    for res in (step.get("observation") or {}).get("results", []):
        parts.append(f"  output: {res.get('content') or ''}")
    return "\n".join(parts)


def _evidence(ctx: CheckContext) -> list[Piece]:
    """The earlier checks' reasons and evidence: summaries, paths and excerpts quote agent data
    (an auto_map value, a file name, a line), so they are read as data, never as instructions."""
    pieces = []
    for c in ctx.earlier:
        lines = [f"check {c.name}:"] + [f"  reason: {r}" for r in c.reasons]
        for e in c.evidence:
            where = ", ".join(
                f"{k} {v}"
                for k, v in (("path", e.path), ("line", e.line), ("step", e.step))
                if v is not None
            )
            ids = ", ".join(f"{k} {v}" for k, v in (("item", e.item), ("tensor", e.tensor)) if v)
            head = "decisive" if e.decisive else "context"
            lines.append(f"  - [{head}] {e.summary} ({'; '.join(p for p in (where, ids) if p)})")
            if e.excerpt:
                lines.append(f"    excerpt: {e.excerpt}")
        if len(lines) > 1:
            pieces.append(Piece(f"evidence of {c.name}", "\n".join(lines)))
    return pieces


def _base_digests(ctx: CheckContext) -> dict[str, str]:
    """sha256 of the base model's files, by name (final_model's copies of them are not the
    agent's writing); empty where the base is not here."""
    from posttrainbench.evaluate.data import sha256_file

    try:
        base = ctx.model.locate(ctx.settings.models_dir)
    except (PtbError, OSError):
        return {}
    return {
        p.name: sha256_file(p)
        for p in base.iterdir()
        if p.is_file() and p.stat().st_size <= 64 << 20 and p.suffix != ".safetensors"
    }


def _decoded(ctx: CheckContext, rel: str) -> str | None:
    try:
        raw = read_inside(ctx.frozen, rel)
    except OSError:
        return None
    if b"\0" in raw:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def material(ctx: CheckContext) -> Material:
    got = Material(evidence=_evidence(ctx))
    got.steps = [Piece(f"step {s.get('step_id')}", step_text(s)) for s in ctx.steps]
    if not got.steps:
        got.steps = [Piece("trajectory", "(no trajectory recorded)")]
    base = _base_digests(ctx)
    listing = []
    for f in ctx.manifest.files:
        note = f"{f.path} ({f.kind}, {f.size} bytes)"
        own = not harness_file(f.path)
        if f.kind != "copied" or not own:
            listing.append(note)
            continue
        name = Path(f.path).name
        if f.path == f"{MODEL_DIR}/{name}" and base.get(name) and base[name] == f.sha256:
            listing.append(f"{note}: identical to the base model's {name}")
            continue
        if vendored(f.path):
            got.not_read += 1
            listing.append(f"{note}: installed package, not read")
            continue
        text = _decoded(ctx, f.path)
        if text is None:
            listing.append(f"{note}: not UTF-8 text")
            continue
        if f.size > WHOLE_FILE_BYTES:
            got.sampled.append(f.path)
            text = f"[first {SAMPLE_CHARS} of {len(text)} characters]\n{text[:SAMPLE_CHARS]}"
        got.files.append(Piece(f"file {f.path}", text))
    got.files.append(Piece("listing of every file left", "\n".join(listing) or "(none)"))
    return got


def _parts(piece: Piece, size: int) -> list[Piece]:
    if len(piece.text) <= size:
        return [piece]
    n = -(-len(piece.text) // size)
    return [
        Piece(f"{piece.label}, part {i + 1} of {n}", piece.text[i * size : (i + 1) * size])
        for i in range(n)
    ]


def chunks(pieces: list[Sectioned], budget: int = CHUNK_CHARS) -> list[list[Sectioned]]:
    """Pieces packed in order into chunks of at most `budget` characters of text; a longer piece
    is cut into parts, each whole in one chunk. Every character of every piece is in a chunk."""
    out: list[list[Sectioned]] = [[]]
    used = 0
    for section, piece in pieces:
        for part in _parts(piece, budget):
            if out[-1] and used + len(part.text) > budget:
                out.append([])
                used = 0
            out[-1].append((section, part))
            used += len(part.text)
    return out
