"""Compressed files and archives opened for the scanner, bounded.

A compressed stream (.gz, .bz2, .xz, .zst) is read through its decompressor; an archive (.zip,
.tar, .tar.gz/.tgz, .tar.xz, .tar.bz2, .tar.zst) is listed and each member read as a file of its
own (named `pack.zip!inner/train.jsonl`). Every decompressed byte counts against a `Budget`: a
cap per member, a cap per run, and a ratio guard against bombs (more decompressed bytes per
compressed byte than real data gives). What would pass a cap raises `OverCap` with the reason;
the scanner lists that file as unscannable, never reads past the cap.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

MEMBER_BYTES = 256 << 20
TOTAL_BYTES = 2 << 30
MAX_RATIO = 500  # decompressed / compressed, past the first RATIO_GRACE bytes
RATIO_GRACE = 1 << 20
MAX_DEPTH = 3  # archives inside archives
MAX_MEMBERS = 100_000

Opener = Callable[[], BinaryIO]


class OverCap(Exception):
    """Reading on would pass a cap: the reason says which."""


@dataclass
class Budget:
    """Decompressed bytes allowed: per member and for the whole scan."""

    member_bytes: int = MEMBER_BYTES
    total_bytes: int = TOTAL_BYTES
    max_ratio: int = MAX_RATIO
    used: int = 0

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.total_bytes:
            raise OverCap(f"over the scan's decompression cap ({self.total_bytes >> 20} MiB)")


class _Capped(io.RawIOBase):
    """A decompressing stream that stops at the member cap, the run's cap or the ratio guard."""

    def __init__(self, inner: Any, raw: BinaryIO, budget: Budget, limit: int) -> None:
        self._inner, self._raw, self._budget, self._limit = inner, raw, budget, limit
        self._out = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._out += n
        consumed = max(self._raw.tell(), 1)
        if self._out > RATIO_GRACE and self._out > consumed * self._budget.max_ratio:
            raise OverCap(f"compression ratio over {self._budget.max_ratio}: a bomb?")
        if self._out > self._limit:
            raise OverCap(f"decompresses to over {self._limit >> 20} MiB")
        self._budget.take(n)
        return n

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._raw.close()
            super().close()


def _zstd(raw: BinaryIO) -> BinaryIO:
    import zstandard

    reader: BinaryIO = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return reader


STREAMS: dict[str, Callable[[BinaryIO], Any]] = {  # a binary file-like of the content
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    ".bz2": lambda raw: bz2.BZ2File(raw, mode="rb"),
    ".xz": lambda raw: lzma.LZMAFile(raw, mode="rb"),  # noqa: SIM115 (closed by _Capped)
    ".zst": _zstd,
}
MAGIC: dict[bytes, str] = {
    b"\x1f\x8b": ".gz",
    b"BZh": ".bz2",
    b"\xfd7zXZ\x00": ".xz",
    b"\x28\xb5\x2f\xfd": ".zst",
}
ARCHIVES = (".zip", ".tar")
TAR_ALIASES = {".tgz": ".gz", ".tbz2": ".bz2", ".txz": ".xz", ".tzst": ".zst"}


def stream_kind(head: bytes) -> str | None:
    """The compressed-stream suffix that these first bytes announce, if any."""
    return next((suffix for magic, suffix in MAGIC.items() if head.startswith(magic)), None)


def decompressed(
    opener: Opener, suffix: str, budget: Budget, whole_archive: bool = False
) -> Opener:
    """An opener of the decompressed bytes of a compressed stream: one member's cap, or the
    scan's for a compressed tar (its members are capped one by one)."""
    limit = budget.total_bytes if whole_archive else budget.member_bytes

    def open_it() -> BinaryIO:
        raw = opener()
        return io.BufferedReader(_Capped(STREAMS[suffix](raw), raw, budget, limit), 1 << 20)

    return open_it


def read_all(opener: Opener, cap: int) -> bytes:
    """Every byte, or OverCap past `cap` (a whole-document reader needs them in memory)."""
    with opener() as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise OverCap(f"over the {cap >> 20} MiB a whole-file reader may hold")
    return data


def members(opener: Opener, kind: str, budget: Budget) -> Iterator[tuple[str, Opener, int]]:
    """(name, opener of its bytes, size) for each regular file of a zip or tar archive; links,
    folders and devices inside are passed over. Each member is read whole into memory, capped."""
    if kind == ".zip":
        yield from _zip_members(opener, budget)
    else:
        yield from _tar_members(opener, budget)


def _zip_members(opener: Opener, budget: Budget) -> Iterator[tuple[str, Opener, int]]:
    with opener() as raw, zipfile.ZipFile(raw) as z:
        infos = [i for i in z.infolist() if not i.is_dir()][:MAX_MEMBERS]
        for info in infos:
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > RATIO_GRACE and ratio > budget.max_ratio:
                raise OverCap(f"{info.filename}: compression ratio over {budget.max_ratio}")
            if info.file_size > budget.member_bytes:
                raise OverCap(f"{info.filename}: over {budget.member_bytes >> 20} MiB")
            with z.open(info) as member:
                data = member.read(budget.member_bytes + 1)
            if len(data) > budget.member_bytes:
                raise OverCap(f"{info.filename}: over {budget.member_bytes >> 20} MiB")
            budget.take(len(data))
            yield info.filename, _bytes_opener(data), len(data)


def _tar_members(opener: Opener, budget: Budget) -> Iterator[tuple[str, Opener, int]]:
    with opener() as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for count, info in enumerate(tar):
            if count >= MAX_MEMBERS:
                raise OverCap(f"over {MAX_MEMBERS} members")
            if not info.isreg():
                continue
            if info.size > budget.member_bytes:
                raise OverCap(f"{info.name}: over {budget.member_bytes >> 20} MiB")
            member = tar.extractfile(info)
            if member is None:
                continue
            data = member.read(info.size)  # counted by the stream it came out of, if compressed
            yield info.name, _bytes_opener(data), len(data)


def _bytes_opener(data: bytes) -> Opener:
    return lambda: io.BytesIO(data)


def split_suffix(name: str) -> tuple[str, str] | None:
    """(stream suffix, inner name) for `x.jsonl.gz` → ('.gz', 'x.jsonl'); `x.tgz` → ('.gz',
    'x.tar'); None for a name that is not a compressed stream."""
    lower = name.lower()
    for alias, stream in TAR_ALIASES.items():
        if lower.endswith(alias):
            return stream, name[: -len(alias)] + ".tar"
    for suffix in STREAMS:
        if lower.endswith(suffix):
            return suffix, name[: -len(suffix)]
    return None
