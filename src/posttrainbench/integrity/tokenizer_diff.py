"""How a submitted tokenizer differs from the base model's, by what it does, not how it is written.

The grader tokenises with the base model's tokenizer files, so a submitted tokenizer changes no
score; a difference is still worth a reviewer's look (a `normalizer` that rewrites test text, an
added token, other merges). tokenizer.json is compared part by part (the model's type, vocabulary,
merges and options, normalizer, pre-tokenizer, post-processor, decoder, added tokens, truncation,
padding), ignoring key order, formatting and the two spellings of merges; tokenizer_config.json
by the keys that change tokenisation; other tokenizer files (vocab.json, merges.txt,
tokenizer.model, *.tiktoken ...) by content. Only files both folders hold are compared: an honest
save may drop the slow tokenizer's files, and the base's are used anyway.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_BYTES = 64 << 20
FAST = "tokenizer.json"
CONFIG = "tokenizer_config.json"
CONFIG_KEYS = (
    "added_tokens_decoder",
    "additional_special_tokens",
    "extra_special_tokens",
    "bos_token",
    "eos_token",
    "pad_token",
    "unk_token",
    "add_bos_token",
    "add_eos_token",
    "add_prefix_space",
    "do_lower_case",
    "split_special_tokens",
    "tokenizer_class",
)
OTHER_FILES = (
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
)


@dataclass(frozen=True)
class TokenizerDifference:
    file: str  # relative to the model folder
    parts: tuple[str, ...]  # what differs: "normalizer", "model.vocab (3 entries)", ...
    excerpt: str  # the submitted value of the first differing part, shortened


def differences(submitted: Path, base: Path) -> list[TokenizerDifference]:
    """The tokenizer files of `submitted` that differ from `base`'s; empty when they agree."""
    out: list[TokenizerDifference] = []
    names = [FAST, CONFIG, *OTHER_FILES]
    names += sorted(p.name for p in submitted.glob("*.tiktoken") if p.is_file())
    for name in names:
        mine, theirs = _read(submitted / name), _read(base / name)
        if mine is None or theirs is None:
            continue
        if name == FAST:
            found = _fast_parts(mine, theirs)
        elif name == CONFIG:
            found = _config_parts(mine, theirs)
        else:
            found = [] if mine == theirs else [(name, _short(mine))]
        if found:
            parts = tuple(part for part, _ in found)
            out.append(TokenizerDifference(file=name, parts=parts, excerpt=found[0][1]))
    return out


def _fast_parts(mine: bytes, theirs: bytes) -> list[tuple[str, str]]:
    a, b = _json(mine), _json(theirs)
    if not isinstance(a, dict) or not isinstance(b, dict):
        return [] if a == b else [("tokenizer.json", _short(mine))]
    found: list[tuple[str, str]] = []
    for key in sorted((a.keys() | b.keys()) - {"version", "model"}):
        x, y = a.get(key), b.get(key)
        if key == "added_tokens":
            x, y = _by_id(x), _by_id(y)
        if x != y:
            found.append((key, _short(x)))
    ma, mb = a.get("model"), b.get("model")
    if not isinstance(ma, dict) or not isinstance(mb, dict):
        return found + ([] if ma == mb else [("model", _short(ma))])
    for key in sorted(ma.keys() | mb.keys()):
        x, y = ma.get(key), mb.get(key)
        if key == "merges":
            x, y = _merges(x), _merges(y)
        if x == y:
            continue
        if isinstance(x, dict) and isinstance(y, dict):
            changed = {k for k in x.keys() | y.keys() if x.get(k) != y.get(k)}
            found.append((f"model.{key} ({len(changed)} entries)", _short(sorted(changed)[:10])))
        else:
            found.append((f"model.{key}", _short(x)))
    return found


def _config_parts(mine: bytes, theirs: bytes) -> list[tuple[str, str]]:
    a, b = _json(mine), _json(theirs)
    if not isinstance(a, dict) or not isinstance(b, dict):
        return [] if a == b else [(CONFIG, _short(mine))]
    return [(f"{CONFIG}:{k}", _short(a.get(k))) for k in CONFIG_KEYS if a.get(k) != b.get(k)]


def _merges(value: Any) -> Any:
    """Merges as "a b" strings: tokenizers writes them as strings or as pairs."""
    if isinstance(value, list):
        return [" ".join(m) if isinstance(m, list) else m for m in value]
    return value


def _by_id(value: Any) -> Any:
    if isinstance(value, list) and all(isinstance(t, dict) for t in value):
        return sorted(value, key=lambda t: (str(t.get("id")), json.dumps(t, sort_keys=True)))
    return value


def _read(path: Path) -> bytes | None:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


def _json(data: bytes) -> object:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _short(value: object) -> str:
    text = value.decode(errors="replace") if isinstance(value, bytes) else json.dumps(value)
    return " ".join(text.split())[:200]
