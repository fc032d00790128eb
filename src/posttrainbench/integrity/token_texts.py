"""Token-id data turned back into text with the run's base tokenizer, for the scanner.

Training data is often kept only as token ids: `input_ids` / `labels` columns of jsonl, json,
parquet or arrow, or integer tensors and arrays saved with `torch.save` or numpy. An integer
sequence whose values fit the base tokenizer's vocabulary is decoded (`labels`' -100 and other
negative ids dropped) and scanned like any record. Field names that say "token ids" are decoded
at any length; an unnamed integer list only from MIN_UNNAMED values on, so a record's short
number lists stay numbers. Long flat streams are cut into overlapping windows (an item never
falls only across a cut). Pickles are never unpickled: `.pt` files are loaded with
`weights_only=True`, numpy files with `allow_pickle=False`; what they refuse is unscannable.
"""

from __future__ import annotations

import io
import itertools
import pickle
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MIN_UNNAMED = 8
WINDOW = 2048
OVERLAP = 256
TENSOR_MAX_BYTES = 1 << 30
_TOKEN_FIELD_NAMES = frozenset(
    {"input_ids", "labels", "label_ids", "token_ids", "tokens", "ids", "targets", "target_ids"}
)

Record = tuple[str, "str | list[int]"]  # (locator, text or token ids)


class Refused(Exception):
    """A file the safe loaders would not load (a pickle beyond tensors, an object array)."""


def token_field(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1].lower()
    return leaf in _TOKEN_FIELD_NAMES or leaf.endswith(("_input_ids", "_labels", "_token_ids"))


class TokenDecoder:
    """The base model's tokenizer, used only to decode (never to run anything of the agent's)."""

    def __init__(self, tokenizer: Any) -> None:
        self._tok = tokenizer
        self.vocab = int(tokenizer.get_vocab_size(with_added_tokens=True))
        self._table = _byte_table(tokenizer, self.vocab)

    @classmethod
    def from_model(cls, folder: Path) -> TokenDecoder | None:
        """From the base model's `tokenizer.json`; None when it has none."""
        from tokenizers import Tokenizer

        path = folder / "tokenizer.json"
        if not path.is_file():
            return None
        return cls(Tokenizer.from_file(str(path)))

    def ids(self, values: Sequence[Any], named: bool) -> list[int] | None:
        """The token ids of an integer list, or None when it is not one (too short unnamed, a
        value past the vocabulary, not integers)."""
        if not values or type(values[0]) is not int:
            return None
        try:
            arr = np.asarray(values)
        except (ValueError, OverflowError, TypeError):
            return None
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            return None
        if int(arr.min()) < 0:
            arr = arr[arr >= 0]
        if arr.size < (1 if named else MIN_UNNAMED) or int(arr.max()) >= self.vocab:
            return None
        ids: list[int] = arr.tolist()
        return ids

    def decode(self, seqs: list[list[int]]) -> list[str]:
        if not seqs:
            return []
        if self._table is not None:
            lengths = np.array([len(s) for s in seqs], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            values = np.concatenate([np.asarray(s, dtype=np.int64) for s in seqs])
            return self.decode_arrays(values, offsets)
        texts: list[str] = self._tok.decode_batch(seqs, skip_special_tokens=True)
        return texts

    def decode_arrays(
        self, values: np.ndarray[Any, Any], offsets: np.ndarray[Any, Any]
    ) -> list[str]:
        """Rows `values[offsets[i]:offsets[i + 1]]` (valid ids) decoded; with a byte-level
        tokenizer by table lookup, in bulk (what `decode_batch` gives, without its per-token
        cost)."""
        if self._table is None:
            rows = [values[a:b].tolist() for a, b in itertools.pairwise(offsets)]
            return self.decode(rows)
        buf, start, length = self._table
        lens = length[values]
        ends = np.cumsum(lens)
        gather = np.repeat(start[values] - (ends - lens), lens) + np.arange(
            int(ends[-1]) if len(ends) else 0
        )
        out = buf[gather].tobytes()
        cuts = np.concatenate([[0], ends])[offsets]
        return [out[a:b].decode("utf-8", "replace") for a, b in itertools.pairwise(cuts)]

    def array_ids(self, arr: np.ndarray[Any, Any]) -> bool:
        """Whether an integer array's values are all token ids (negatives are padding)."""
        if arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            return False
        return int(arr.max()) < self.vocab


def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the character standing for each byte, reversed."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def _byte_table(
    tokenizer: Any, vocab: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]] | None:
    """(bytes, start, length) of every id for a tokenizer whose decoder is plain ByteLevel
    (Qwen's, ptb-tiny's); special tokens decode to nothing, as with skip_special_tokens. None
    for any other decoder (decode_batch is used)."""
    from tokenizers import decoders

    if not isinstance(tokenizer.decoder, decoders.ByteLevel):
        return None
    alphabet = _byte_level_alphabet()
    added = tokenizer.get_added_tokens_decoder()
    pieces = []
    for i in range(vocab):
        token = added.get(i)
        if token is not None:
            pieces.append(b"" if token.special else token.content.encode())
            continue
        text = tokenizer.id_to_token(i) or ""
        if any(c not in alphabet for c in text):
            return None
        pieces.append(bytes(alphabet[c] for c in text))
    length = np.array([len(p) for p in pieces], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(length)[:-1]]).astype(np.int64)
    return np.frombuffer(b"".join(pieces), dtype=np.uint8), start, length


def windows(ids: list[int], label: str) -> Iterator[Record]:
    """A long flat token stream as overlapping windows: `label[start:end]`."""
    if len(ids) <= WINDOW:
        yield label, ids
        return
    step = WINDOW - OVERLAP
    for start in range(0, len(ids) - OVERLAP, step):
        yield f"{label}[{start}:{start + WINDOW}]", ids[start : start + WINDOW]


def _array_records(arr: np.ndarray[Any, Any], label: str, dec: TokenDecoder) -> Iterator[Record]:
    if arr.ndim == 0 or not dec.array_ids(arr):
        return
    rows = arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr.reshape(1, -1)
    for i, row in enumerate(rows):
        ids = [int(v) for v in row if v >= 0]
        if ids:
            yield from windows(ids, f"{label}[{i}]" if arr.ndim > 1 else label)


def object_records(obj: Any, label: str, dec: TokenDecoder | None) -> Iterator[Record]:
    """Texts and token-id sequences inside what a safe loader returned: tensors, arrays, dicts,
    lists, strings."""
    import torch

    if isinstance(obj, torch.Tensor):
        if dec is not None and not obj.is_floating_point() and not obj.is_complex():
            yield from _array_records(obj.detach().cpu().numpy(), label, dec)
    elif isinstance(obj, np.ndarray):
        if dec is not None:
            yield from _array_records(obj, label, dec)
    elif isinstance(obj, str):
        yield label, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from object_records(value, f"{label}.{key}" if label else str(key), dec)
    elif isinstance(obj, list | tuple):
        ids = dec.ids(obj, token_field(label)) if dec is not None else None
        if ids is not None:
            yield from windows(ids, label)
            return
        for i, value in enumerate(obj):
            yield from object_records(value, f"{label}[{i}]", dec)


def torch_records(data: bytes, dec: TokenDecoder | None) -> Iterator[Record]:
    import torch

    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Refused(f"a pickle weights_only refuses ({first[:160]})") from None
    yield from object_records(obj, "", dec)


def numpy_records(data: bytes, dec: TokenDecoder | None, npz: bool) -> Iterator[Record]:
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if npz:
            with loaded as archive:
                arrays = {name: archive[name] for name in archive.files}
        else:
            arrays = {"": loaded}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise Refused("an object array (a pickle): not loaded") from None
        raise
    except zipfile.BadZipFile as exc:
        raise Refused(f"not an npz archive ({exc})") from None
    for name, arr in arrays.items():
        if arr.dtype.kind in "US":
            yield from ((f"{name}[{i}]", str(v)) for i, v in enumerate(arr.reshape(-1)))
        elif dec is not None:
            yield from _array_records(arr, name, dec)
