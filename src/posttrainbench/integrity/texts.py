"""Turn the files under a directory into scannable text: chunks of lines, one training record per
line, for the n-gram scanner (integrity/ngrams.py) and the short-item matcher (short_items.py).

Readers are picked by file suffix from READERS. Line formats are passed through as raw bytes and
cut at line boundaries; JSON documents are walked to every string at any depth, one record per
line (each line's JSON path kept as its label); Parquet and Arrow rows become lines. Token ids
(`input_ids`, `labels`, integer tensors and arrays in `.pt`/`.npy`/`.npz`) are decoded with the
run's base tokenizer when one is given (token_texts.py). Compressed files and archives are opened
through archives.py, bounded, their members read by their own suffix (`pack.zip!inner.jsonl`).
A file whose name hides what it is (no suffix, a hub blob, `data.bin` that is gzip) is read by its
magic bytes. Files with a known binary suffix are skipped unread; any other suffix is read as
lines if its first 8 KB are UTF-8 text, else skipped as "binary". Every file left out is listed
in `skipped` with the reason and its size. Symlinks are never followed: not while walking, and
not when a file is opened (O_NOFOLLOW, regular files only).
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from posttrainbench.integrity import archives
from posttrainbench.integrity.archives import Budget, Opener, OverCap
from posttrainbench.integrity.frozen import open_inside
from posttrainbench.integrity.token_texts import (
    MIN_UNNAMED,
    TENSOR_MAX_BYTES,
    Refused,
    TokenDecoder,
    numpy_records,
    token_field,
    torch_records,
)

MAX_JSON_BYTES = 256 << 20
ARROW_BATCH_ROWS = 4096
_SNIFF_BYTES = 8192
_UNICODE_ESCAPES = re.compile(rb"(?:\\u[0-9a-fA-F]{4})+")
_INT_LIST = re.compile(rb"\[\s*-?\d+\s*,\s*-?\d+\s*,")
NOT_TEXT = "not text, and no format the scanner reads"
_PLACEHOLDER = re.compile(rb"\x00(\d+)\x00")


@dataclass(frozen=True)
class TextChunk:
    path: str  # relative to the scanned root (posix); `archive!member` inside an archive
    first_line: int  # 1-based line/record number of the chunk's first line in that file
    data: bytes  # lines (records) separated by b"\n", each record flattened to one line
    labels: tuple[str, ...] | None = None  # per line, where its record is (JSON path, tensor row)


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str
    size: int = 0  # bytes left unread, where known


@dataclass
class ReadOptions:
    chunk_bytes: int = 16 << 20
    decoder: TokenDecoder | None = None
    budget: Budget = field(default_factory=Budget)
    depth: int = 0


Block = tuple[bytes, tuple[str, ...] | None]  # lines, and their labels if any
Reader = Callable[[Opener, ReadOptions], Iterator[Block]]


class Unscannable(Exception):
    """A file the readers cannot turn into text; the message says why."""


def _open(path: Path) -> BinaryIO:
    """The file itself, never what a link there points at."""
    return open_inside(path.parent, path.name)


def _raw_blocks(opener: Opener, chunk_bytes: int) -> Iterator[bytes]:
    """The file's bytes in chunks of about chunk_bytes that end at a line boundary."""
    with opener() as f:
        rest = b""
        while block := f.read(chunk_bytes):
            block = rest + block
            cut = block.rfind(b"\n") + 1
            if cut == 0 and len(block) < 16 * chunk_bytes:
                rest = block
                continue
            if cut == 0:
                cut = len(block)  # a giant line: cut it rather than hold it all
            rest = block[cut:]
            yield block[:cut]
        if rest:
            yield rest


def _read_lines(opener: Opener, opts: ReadOptions) -> Iterator[Block]:
    for data in _raw_blocks(opener, opts.chunk_bytes):
        yield data, None


def _unescape(match: re.Match[bytes]) -> bytes:
    try:
        text: str = json.loads(b'"' + match.group() + b'"')
    except ValueError:
        return b" "
    return text.encode("utf-8", "replace")


def _unescape_json(data: bytes) -> bytes:
    """JSON-encoded lines with the escapes that would glue words turned into what they stand
    for: "a\\nb" gives the words a and b, "Janet\\u2019s" the text Janet’s."""
    if b"\\" not in data:
        return data
    data = data.replace(b"\\n", b" ").replace(b"\\t", b" ").replace(b"\\r", b" ")
    if b"\\u" in data:
        data = _UNICODE_ESCAPES.sub(_unescape, data)
    return data


def _decode_lines(data: bytes, dec: TokenDecoder) -> bytes:
    """JSON lines holding integer lists (token ids) with the lists decoded, all of the chunk's
    in one call; other lines as are."""
    out = []
    pending: list[list[int]] = []
    for line in data.split(b"\n"):
        if _INT_LIST.search(line):
            try:
                doc = json.loads(line)
            except ValueError:
                pass
            else:
                line = _one_line(flatten(doc, "", dec, pending))
        out.append(line)
    joined = b"\n".join(out)
    if not pending:
        return joined
    texts = [_one_line(t) for t in dec.decode(pending)]
    return _PLACEHOLDER.sub(lambda m: texts[int(m.group(1))], joined)


def _read_jsonl(opener: Opener, opts: ReadOptions) -> Iterator[Block]:
    for data in _raw_blocks(opener, opts.chunk_bytes):
        if opts.decoder is not None and _INT_LIST.search(data):
            data = _decode_lines(data, opts.decoder)
        yield _unescape_json(data), None


def _one_line(text: str) -> bytes:
    return text.replace("\n", " ").replace("\r", " ").encode("utf-8", "replace")


def _lines_to_blocks(records: Iterator[tuple[str, str]], chunk_bytes: int) -> Iterator[Block]:
    """(label, text) records as blocks of lines, labels kept."""
    batch: list[bytes] = []
    labels: list[str] = []
    size = 0
    for label, text in records:
        encoded = _one_line(text)
        batch.append(encoded)
        labels.append(label)
        size += len(encoded) + 1
        if size >= chunk_bytes:
            yield b"\n".join(batch) + b"\n", tuple(labels)
            batch, labels, size = [], [], 0
    if batch:
        yield b"\n".join(batch) + b"\n", tuple(labels)


def flatten(
    value: Any, name: str, dec: TokenDecoder | None, pending: list[list[int]] | None = None
) -> str:
    """Every string and number under `value`, at any depth, space-separated; integer lists that
    are token ids decoded with `dec` (or, given `pending`, added to it and a placeholder left
    for the caller to decode them all at once)."""
    if isinstance(value, str):
        return value.replace("\x00", " ") if pending is not None else value
    if isinstance(value, bool) or value is None or isinstance(value, bytes | bytearray):
        return ""
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        parts = (flatten(v, str(k), dec, pending) for k, v in value.items())
        return " ".join(p for p in parts if p)
    if isinstance(value, list | tuple):
        if dec is not None:
            ids = dec.ids(value, token_field(name))
            if ids is not None and pending is not None:
                pending.append(ids)
                return f"\x00{len(pending) - 1}\x00"
            if ids is not None:
                return dec.decode([ids])[0]
        parts = (flatten(v, name, dec, pending) for v in value)
        return " ".join(p for p in parts if p)
    return str(value)


def _nested(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(v, dict | list) for v in value)
    )


def json_records(node: Any, path: str = "$") -> Iterator[tuple[str, Any]]:
    """A parsed JSON document as (JSON path, record) pairs: each element of every list of
    records at any depth is one record (flattened whole); a dict's own fields one record; every
    other string on its own. Nothing in the document is left out."""
    if isinstance(node, list):
        if not any(isinstance(v, dict | list) for v in node):
            yield path, node
            return
        for i, value in enumerate(node):
            yield f"{path}[{i}]", value
    elif isinstance(node, dict):
        if not any(_nested(v) for v in node.values()):
            yield path, node
            return
        own = {k: v for k, v in node.items() if not _nested(v)}
        if own:
            yield path, own
        for key, value in node.items():
            if _nested(value):
                yield from json_records(value, f"{path}.{key}")
    else:
        yield path, node


def _read_json(opener: Opener, opts: ReadOptions) -> Iterator[Block]:
    try:
        whole = archives.read_all(opener, MAX_JSON_BYTES)
    except OverCap:
        whole = None
    if whole is not None:
        try:
            doc = json.loads(whole)
        except (ValueError, RecursionError):
            pass
        else:
            records = (
                (label, flatten(value, label.rsplit(".", 1)[-1], opts.decoder))
                for label, value in json_records(doc)
            )
            yield from _lines_to_blocks(records, opts.chunk_bytes)
            return
    yield from _read_jsonl(opener, opts)


def _read_text_if_utf8(opener: Opener, opts: ReadOptions) -> Iterator[Block]:
    with opener() as f:
        head = f.read(_SNIFF_BYTES)
    if not _is_text(head):
        raise Unscannable(NOT_TEXT)
    yield from _read_lines(opener, opts)


def _is_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut by the sniff window
    return True


def _column_texts(column: Any, name: str, dec: TokenDecoder | None) -> list[str]:
    import pyarrow as pa

    kind = column.type
    if (
        dec is not None
        and (pa.types.is_list(kind) or pa.types.is_large_list(kind))
        and pa.types.is_integer(kind.value_type)
    ):
        decoded = _decode_column(column, name, dec)
        if decoded is not None:
            return decoded
    return [flatten(v, name, dec) for v in column.to_pylist()]


def _decode_column(column: Any, name: str, dec: TokenDecoder) -> list[str] | None:
    """A list<int> column decoded row by row, or None when its values are not token ids; read
    as arrays (no Python int per value)."""
    import numpy as np

    column = column.fill_null([])
    values = column.flatten().to_numpy(zero_copy_only=False)
    offsets = column.offsets.to_numpy()
    offsets = offsets - offsets[0]
    if values.size and int(values.max()) >= dec.vocab:
        return None
    minimum = 1 if token_field(name) else MIN_UNNAMED
    if values.size and int(values.min()) < 0:  # labels' -100: dropped, row by row
        row = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
        keep_value = values >= 0
        values = values[keep_value]
        offsets = np.concatenate(
            [[0], np.cumsum(np.bincount(row[keep_value], minlength=len(offsets) - 1))]
        )
    counts = np.diff(offsets)
    texts = dec.decode_arrays(values.astype(np.int64), offsets)
    for i in np.flatnonzero(counts < minimum):  # too short to be token ids: numbers
        texts[i] = " ".join(map(str, values[offsets[i] : offsets[i + 1]].tolist()))
    return texts


def _arrow_rows(
    table_batches: Iterator[Any], dec: TokenDecoder | None
) -> Iterator[tuple[str, str]]:
    row = 0
    for batch in table_batches:
        names = batch.schema.names
        columns = [_column_texts(c, n, dec) for c, n in zip(batch.columns, names, strict=True)]
        for texts in zip(*columns, strict=True):
            row += 1
            yield f"row {row}", " ".join(text for text in texts if text)


def _seekable(opener: Opener, opts: ReadOptions) -> BinaryIO:
    f = opener()
    if f.seekable():
        return f
    f.close()
    return io.BytesIO(archives.read_all(opener, opts.budget.member_bytes))


def _read_parquet(opener: Opener, opts: ReadOptions) -> Iterator[Block]:
    import pyarrow.parquet as pq

    with _seekable(opener, opts) as raw, pq.ParquetFile(raw) as f:
        rows = _arrow_rows(f.iter_batches(batch_size=ARROW_BATCH_ROWS), opts.decoder)
        yield from _lines_to_blocks(rows, opts.chunk_bytes)


def _read_arrow(opener: Opener, opts: ReadOptions) -> Iterator[Block]:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with _seekable(opener, opts) as raw, pa.PythonFile(raw, mode="r") as source:
        try:
            reader: Any = ipc.open_file(source)
            batches: Iterator[Any] = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            batches = iter(ipc.open_stream(source))
        yield from _lines_to_blocks(_arrow_rows(batches, opts.decoder), opts.chunk_bytes)


def _decoded_records(
    records: Iterator[tuple[str, str | list[int]]], opts: ReadOptions
) -> Iterator[tuple[str, str]]:
    dec = opts.decoder
    for label, value in records:
        if isinstance(value, str):
            yield label, value
        elif dec is not None:
            yield label, dec.decode([value])[0]


def _read_torch(opener: Opener, opts: ReadOptions) -> Iterator[Block]:
    data = archives.read_all(opener, TENSOR_MAX_BYTES)
    records = _decoded_records(torch_records(data, opts.decoder), opts)
    yield from _lines_to_blocks(records, opts.chunk_bytes)


def _numpy_reader(npz: bool) -> Reader:
    def read(opener: Opener, opts: ReadOptions) -> Iterator[Block]:
        data = archives.read_all(opener, TENSOR_MAX_BYTES)
        records = _decoded_records(numpy_records(data, opts.decoder, npz), opts)
        yield from _lines_to_blocks(records, opts.chunk_bytes)

    return read


_LINE_SUFFIX_TEXT = """
.txt .csv .tsv .py .md .sh .yaml .yml .jinja .j2 .tex .rst .toml .cfg .ini .html .js .ts .log .out
.err .ipynb
"""
_LINE_SUFFIXES = _LINE_SUFFIX_TEXT.split()

READERS: dict[str, Reader] = {
    **dict.fromkeys(_LINE_SUFFIXES, _read_lines),
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".json": _read_json,
    ".parquet": _read_parquet,
    ".arrow": _read_arrow,
    ".pt": _read_torch,
    ".pth": _read_torch,
    ".npy": _numpy_reader(npz=False),
    ".npz": _numpy_reader(npz=True),
}
# Never opened (unless their first bytes say they are a compressed stream); a file with any
# other unknown suffix is read by its magic bytes, else as lines if it starts as UTF-8 text.
_BINARY_SUFFIX_TEXT = """
.safetensors .bin .ckpt .gguf .ggml .onnx .pkl .pickle .h5 .msgpack .png .jpg .jpeg .gif .webp .bmp
.tiff .pdf .mp3 .wav .flac .mp4 .7z .so .o .a .pyc .whl .db .sqlite .model .idx .lock
"""
BINARY_SUFFIXES = frozenset(_BINARY_SUFFIX_TEXT.split())
# What a file's first bytes say it is, for names that do not (checked in order).
_MAGIC: list[tuple[Callable[[bytes], bool], str]] = [
    (lambda h: h.startswith(b"PAR1"), ".parquet"),
    (lambda h: h.startswith(b"ARROW1"), ".arrow"),
    (lambda h: h.startswith(b"\x93NUMPY"), ".npy"),
    (lambda h: h.startswith(b"PK\x03\x04"), ".zip"),
    (lambda h: h[257:262] == b"ustar", ".tar"),
    (lambda h: h[:1] == b"\xff" and h[1:2] in (b"\x00", b"\x01"), ".arrow"),  # IPC stream
]


def _excluded(rel: str, exclude: Collection[str]) -> bool:
    return any(rel == e or rel.startswith(e.rstrip("/") + "/") for e in exclude)


def _walk(root: Path, exclude: Collection[str], skipped: list[Skipped]) -> Iterator[Path]:
    """Regular files under root, sorted, never following symlinks."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                found = sorted(it, key=lambda e: e.name, reverse=True)
        except OSError as exc:
            skipped.append(Skipped(folder.relative_to(root).as_posix(), str(exc)))
            continue
        for entry in found:
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            if _excluded(rel, exclude):
                continue
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError as exc:
                skipped.append(Skipped(rel, str(exc)))
                continue
            if stat.S_ISLNK(mode):
                skipped.append(Skipped(rel, "symlink"))
            elif stat.S_ISDIR(mode):
                stack.append(path)
            elif stat.S_ISREG(mode):
                yield path
            else:
                skipped.append(Skipped(rel, "special file"))


def iter_texts(
    root: Path,
    exclude: Collection[str] = (),
    chunk_bytes: int = 16 << 20,
    skipped: list[Skipped] | None = None,
    decoder: TokenDecoder | None = None,
    budget: Budget | None = None,
) -> Iterator[TextChunk]:
    """Chunks of text of every readable file under root, in path order; files left out are
    appended to `skipped` with the reason. One `budget` bounds all decompression."""
    skipped = skipped if skipped is not None else []
    exclude = [e.strip("/") for e in exclude]
    budget = budget or Budget()
    for path in _walk(root, exclude, skipped):
        rel = path.relative_to(root).as_posix()
        yield from read_file(path, rel, chunk_bytes, skipped, decoder=decoder, budget=budget)


def _head(opener: Opener) -> bytes:
    try:
        with opener() as f:
            return f.read(512)
    except (OSError, OverCap, EOFError, ValueError):
        return b""


def _sniff(head: bytes) -> str | None:
    stream = archives.stream_kind(head)
    if stream is not None:
        return stream
    return next((suffix for test, suffix in _MAGIC if test(head)), None)


def content_suffix(path: Path, name: str) -> str:
    """The suffix to read a file by when its name may lie (a link's, a hub blob's): Parquet,
    Arrow and compressed files by their magic bytes, else the name's suffix, or none (sniffed as
    UTF-8 text) for one that claims to be binary."""
    head = _head(lambda: _open(path))
    if head.startswith(b"PAR1"):
        return ".parquet"
    if head.startswith(b"ARROW1"):
        return ".arrow"
    stream = archives.stream_kind(head)
    if stream is not None:
        return stream
    suffix = Path(name).suffix.lower()
    return "" if suffix in BINARY_SUFFIXES else suffix


def _kind(name: str, suffix: str | None, opener: Opener) -> tuple[str, str]:
    """(how to read it, the name its inner content goes by): a compressed stream's suffix, an
    archive's, a reader's, or "binary"."""
    if suffix is None:
        split = archives.split_suffix(name)
        if split is not None:
            return split
        suffix = Path(name).suffix.lower()
    if suffix in archives.STREAMS:
        inner = name[: -len(suffix)] if name.lower().endswith(suffix) else name
        return suffix, inner
    if suffix in archives.ARCHIVES or suffix in READERS:
        return suffix, name
    head = _head(opener)
    if suffix in BINARY_SUFFIXES:
        stream = archives.stream_kind(head)
        return (stream, Path(name).stem) if stream else ("binary", name)
    sniffed = _sniff(head)
    if sniffed in archives.STREAMS:
        return sniffed, Path(name).stem  # its content is known by its own first bytes
    return (sniffed or "", name)


def _read_source(
    opener: Opener,
    rel: str,
    opts: ReadOptions,
    skipped: list[Skipped],
    suffix: str | None = None,
    size: int = 0,
    name: str | None = None,
) -> Iterator[TextChunk]:
    """Chunks of one file or archive member (`name` says what it is: a compressed stream's
    content goes by its name less the suffix), by what it is; what cannot be read goes to
    `skipped` with the reason."""
    name = name or rel.rsplit("!", 1)[-1]
    kind, inner = _kind(name, suffix, opener)
    line = 1
    try:
        if kind == "binary":
            raise Unscannable("binary")
        if kind in archives.STREAMS:
            whole = Path(inner).suffix.lower() == ".tar"
            source = archives.decompressed(opener, kind, opts.budget, whole_archive=whole)
            yield from _read_source(source, rel, opts, skipped, size=size, name=inner)
            return
        if kind in archives.ARCHIVES:
            yield from _read_archive(opener, rel, kind, opts, skipped)
            return
        reader = READERS.get(kind, _read_text_if_utf8)
        for data, labels in reader(opener, opts):
            yield TextChunk(rel, line, data, labels)
            line += data.count(b"\n")
    except Unscannable as exc:
        skipped.append(Skipped(rel, str(exc), size))
    except OverCap as exc:
        skipped.append(Skipped(rel, f"not scanned past a cap: {exc}", size))
    except Refused as exc:
        skipped.append(Skipped(rel, str(exc), size))
    except OSError as exc:
        skipped.append(Skipped(rel, str(exc), size))
    except Exception as exc:  # a malformed file is evidence, not a crash
        skipped.append(Skipped(rel, f"unreadable: {type(exc).__name__}: {exc}"[:300], size))


def _read_archive(
    opener: Opener, rel: str, kind: str, opts: ReadOptions, skipped: list[Skipped]
) -> Iterator[TextChunk]:
    if opts.depth >= archives.MAX_DEPTH:
        raise Unscannable(f"an archive nested over {archives.MAX_DEPTH} deep")
    inner = ReadOptions(opts.chunk_bytes, opts.decoder, opts.budget, opts.depth + 1)
    for name, member, size in archives.members(opener, kind, opts.budget):
        yield from _read_source(member, f"{rel}!{name}", inner, skipped, size=size)


def read_file(
    path: Path,
    rel: str,
    chunk_bytes: int = 16 << 20,
    skipped: list[Skipped] | None = None,
    suffix: str | None = None,
    decoder: TokenDecoder | None = None,
    budget: Budget | None = None,
) -> Iterator[TextChunk]:
    """Chunks of text of one file, named `rel` in them, read by what it is (its suffix, or
    `suffix`, or its magic bytes); a file left out goes to `skipped`."""
    skipped = skipped if skipped is not None else []
    try:
        size = os.lstat(path).st_size
    except OSError:
        size = 0
    opts = ReadOptions(chunk_bytes, decoder, budget or Budget())
    yield from _read_source(lambda: _open(path), rel, opts, skipped, suffix, size)
