"""Turn the files under a directory into scannable text: chunks of lines, one training record per
line, for the n-gram scanner (integrity/ngrams.py).

Readers are picked by file suffix from READERS. Line formats are passed through as raw bytes and
cut at line boundaries; JSON, Parquet and Arrow files are parsed and flattened to one record per
line. Files with a known binary suffix are skipped unread; any other suffix is read as lines if
its first 8 KB are UTF-8 text, else skipped as "binary". Symlinks are never followed: not while
walking, and not when a file is opened (O_NOFOLLOW, regular files only).
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from posttrainbench.integrity.frozen import open_inside

MAX_JSON_BYTES = 256 << 20
ARROW_BATCH_ROWS = 4096
_SNIFF_BYTES = 8192
_UNICODE_ESCAPES = re.compile(rb"(?:\\u[0-9a-fA-F]{4})+")


@dataclass(frozen=True)
class TextChunk:
    path: str  # relative to the scanned root (posix)
    first_line: int  # 1-based line/record number of the chunk's first line in that file
    data: bytes  # lines (records) separated by b"\n", each record flattened to one line


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


Reader = Callable[[Path, int], Iterator[bytes]]  # (file, chunk_bytes) -> chunks of whole lines


def _open(path: Path) -> BinaryIO:
    """The file itself, never what a link there points at."""
    return open_inside(path.parent, path.name)


def _raw_chunks(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    """The file's bytes in chunks of about chunk_bytes that end at a line boundary."""
    with _open(path) as f:
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


def _read_jsonl(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    for chunk in _raw_chunks(path, chunk_bytes):
        yield _unescape_json(chunk)


def _lines_to_chunks(lines: Iterator[str], chunk_bytes: int) -> Iterator[bytes]:
    batch: list[bytes] = []
    size = 0
    for line in lines:
        encoded = line.replace("\n", " ").replace("\r", " ").encode("utf-8", "replace")
        batch.append(encoded)
        size += len(encoded) + 1
        if size >= chunk_bytes:
            yield b"\n".join(batch) + b"\n"
            batch, size = [], 0
    if batch:
        yield b"\n".join(batch) + b"\n"


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return ""
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=str)


def _records(doc: Any) -> Iterator[str]:
    """A parsed JSON document as records: the elements of a top-level list, of the first list
    of dicts among a dict's values, else the dict's values."""
    if isinstance(doc, list):
        values: list[Any] = doc
    elif isinstance(doc, dict):
        lists = [v for v in doc.values() if isinstance(v, list) and v]
        records = [v for v in lists if any(isinstance(x, dict) for x in v)]
        values = max(records or lists, key=len) if lists else list(doc.values())
    else:
        values = [doc]
    for value in values:
        yield _as_text(value)


def _read_json(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    with _open(path) as f:
        whole = f.read() if os.fstat(f.fileno()).st_size <= MAX_JSON_BYTES else None
    if whole is not None:
        try:
            doc = json.loads(whole)
        except (ValueError, RecursionError):
            pass
        else:
            yield from _lines_to_chunks(_records(doc), chunk_bytes)
            return
    yield from _read_jsonl(path, chunk_bytes)


def _read_text_if_utf8(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    with _open(path) as f:
        head = f.read(_SNIFF_BYTES)
    if not _is_text(head):
        raise _NotText
    yield from _raw_chunks(path, chunk_bytes)


class _NotText(Exception):
    pass


def _is_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a character cut by the sniff window
    return True


def _arrow_rows(table_batches: Iterator[Any]) -> Iterator[str]:
    for batch in table_batches:
        columns = [column.to_pylist() for column in batch.columns]
        for row in zip(*columns, strict=True):
            yield " ".join(text for text in map(_as_text, row) if text)


def _read_parquet(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    import pyarrow.parquet as pq

    with _open(path) as raw, pq.ParquetFile(raw) as f:
        yield from _lines_to_chunks(
            _arrow_rows(f.iter_batches(batch_size=ARROW_BATCH_ROWS)), chunk_bytes
        )


def _read_arrow(path: Path, chunk_bytes: int) -> Iterator[bytes]:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with _open(path) as raw, pa.PythonFile(raw, mode="r") as source:
        try:
            reader: Any = ipc.open_file(source)
            batches: Iterator[Any] = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            batches = iter(ipc.open_stream(source))
        yield from _lines_to_chunks(_arrow_rows(batches), chunk_bytes)


_LINE_SUFFIX_TEXT = """
.txt .csv .tsv .py .md .sh .yaml .yml .jinja .j2 .tex .rst .toml .cfg .ini .html .js .ts .log .out
.err .ipynb
"""
_LINE_SUFFIXES = _LINE_SUFFIX_TEXT.split()

READERS: dict[str, Reader] = {
    **dict.fromkeys(_LINE_SUFFIXES, _raw_chunks),
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".json": _read_json,
    ".parquet": _read_parquet,
    ".arrow": _read_arrow,
}
# Never opened; a file with any other unknown suffix is read as lines if it starts as UTF-8 text.
_BINARY_SUFFIX_TEXT = """
.safetensors .bin .pt .pth .ckpt .gguf .ggml .onnx .npy .npz .pkl .pickle .h5 .msgpack .png .jpg
.jpeg .gif .webp .bmp .tiff .pdf .mp3 .wav .flac .mp4 .zip .gz .tgz .bz2 .xz .zst .tar .7z .so .o .a
.pyc .whl .db .sqlite .model .idx .lock
"""
BINARY_SUFFIXES = frozenset(_BINARY_SUFFIX_TEXT.split())


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
) -> Iterator[TextChunk]:
    """Chunks of text of every readable file under root, in path order; files left out are
    appended to `skipped` with the reason."""
    skipped = skipped if skipped is not None else []
    exclude = [e.strip("/") for e in exclude]
    for path in _walk(root, exclude, skipped):
        yield from read_file(path, path.relative_to(root).as_posix(), chunk_bytes, skipped)


def content_suffix(path: Path, name: str) -> str:
    """The suffix to read a file by when its name may lie (a link's, a hub blob's): Parquet and
    Arrow files by their magic bytes, else the name's suffix, or none (sniffed as UTF-8 text) for
    one that claims to be binary."""
    try:
        with _open(path) as f:
            head = f.read(8)
    except OSError:
        head = b""
    if head.startswith(b"PAR1"):
        return ".parquet"
    if head.startswith(b"ARROW1"):
        return ".arrow"
    suffix = Path(name).suffix.lower()
    return "" if suffix in BINARY_SUFFIXES else suffix


def read_file(
    path: Path,
    rel: str,
    chunk_bytes: int = 16 << 20,
    skipped: list[Skipped] | None = None,
    suffix: str | None = None,
) -> Iterator[TextChunk]:
    """Chunks of text of one file, named `rel` in them, read by its suffix (or `suffix`); a file
    left out goes to `skipped`."""
    skipped = skipped if skipped is not None else []
    suffix = path.suffix.lower() if suffix is None else suffix
    if suffix in BINARY_SUFFIXES:
        skipped.append(Skipped(rel, "binary"))
        return
    reader = READERS.get(suffix, _read_text_if_utf8)
    line = 1
    try:
        for data in reader(path, chunk_bytes):
            yield TextChunk(rel, line, data)
            line += data.count(b"\n")
    except _NotText:
        skipped.append(Skipped(rel, "binary"))
    except OSError as exc:
        skipped.append(Skipped(rel, str(exc)))
    except Exception as exc:  # a malformed parquet/arrow file is evidence, not a crash
        skipped.append(Skipped(rel, f"unreadable: {type(exc).__name__}: {exc}"))
