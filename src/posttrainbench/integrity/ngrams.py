"""N-gram index of benchmark items, and a scanner for training text (hundreds of MB/s a core).

Normalisation (identical for indexed entries and scanned bytes, which are tokenised by the same
compiled kernel, one pass over the bytes): ASCII letters are lowercased; a token is a maximal run
of ASCII letters/digits and non-ASCII bytes (UTF-8 text counts as letters), or a single math
symbol from ``+-*/=<>^%$``; every other byte separates. STOPWORDS are dropped, and n-grams are
taken over the remaining content tokens, never across a line. A token's bytes are packed into
64-bit words mixed by multiplication, an n-gram hash combines n token hashes with uint64
arithmetic.

An entry matches a line by the IDF-weighted share of its distinct n-grams present in that line.
N-grams shared by many entries are dropped at build as boilerplate, so a line is flagged only by
content specific to one item.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from numba import njit

U64 = npt.NDArray[np.uint64]

SYMBOLS = b"+-*/=<>^%$"
DEFAULT_N = 3
DEFAULT_MIN_NGRAMS = 4
# From tests/unit/test_ngrams.py: verbatim 1.0, light paraphrases 0.19-0.47, different problems
# of the same style <= 0.13 (answers sharing one calculation), boilerplate 0.
DEFAULT_THRESHOLD = 0.15
BOILERPLATE_FRACTION = 0.05
BOILERPLATE_MIN_ENTRIES = 3
BLOCK_BYTES = 1 << 18
# Weight of an n-gram made only of numbers and symbols ("9 * 14", "14 = 126"): arithmetic recurs
# across different problems, so it is weaker evidence than wording.
NUMERIC_WEIGHT = 0.25

_STOPWORD_TEXT = """
a an the of is are was were be been being am to in on at for from by with about as into onto and
or but if then than so not no nor it its this that these those there here he she they them his her
hers their theirs him we us our you your yours i me my mine who whom whose which what when where why
how many much each every per all any some more most do does did done has have had having will would
shall should can could may might must let s t ll ve re d m also just only very up out over after
before again further once off same such own too both few other
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())

# bytes.translate table: separators -> 0; ASCII letters/digits -> lowercase | 0x80, so every byte of
# a letter/digit run has its high bit set; symbols and b"\n" unchanged. The mapping is injective on
# ASCII; a collision with a UTF-8 sequence needs an exotic script.
_TABLE = bytearray(256)
for _b in range(256):
    _c = chr(_b)
    if _c.isascii() and _c.isalnum():
        _TABLE[_b] = ord(_c.lower()) | 0x80
    elif _b >= 0x80 or _b in SYMBOLS or _c == "\n":
        _TABLE[_b] = _b
_LOWER_TABLE = bytes(_TABLE)

_TABLE_ARRAY = np.frombuffer(_LOWER_TABLE, dtype=np.uint8).copy()
_SEED = np.uint64(0xCBF29CE484222325)
_K1 = np.uint64(0x9E3779B97F4A7C15)
_S3, _S8, _S29, _S56 = np.uint64(3), np.uint64(8), np.uint64(29), np.uint64(56)
_LOW3 = np.uint64(7)
_P = np.uint64(0xFF51AFD7ED558CCD)

_TOKEN_RE = re.compile(rb"[0-9a-z\x80-\xff]+|[" + re.escape(SYMBOLS) + rb"]")


def tokens(text: str) -> list[str]:
    """Reference normalisation (slow; for tests and debugging): the tokens of `text`, stopwords
    included."""
    return [t.decode() for t in _TOKEN_RE.findall(text.encode().lower())]


def content_tokens(text: str) -> list[str]:
    return [t for t in tokens(text) if t not in STOPWORDS]


@njit(cache=True, nogil=True)
def _tokenise_kernel(
    data: npt.NDArray[np.uint8],
    table: npt.NDArray[np.uint8],
    out_h: U64,
    out_num: npt.NDArray[np.bool_],
) -> int:
    """One pass over the bytes: the hash of each token (a letter/digit run, or one symbol or
    b"\n") and whether it is a number or symbol. Bytes are packed 8 to a word and each full word
    is mixed in with one multiply, so the serial work per byte is a shift and an or. Returns how
    many tokens were written."""
    count = 0
    h = _SEED
    w = np.uint64(0)
    length = 0
    first = 0
    for i in range(data.shape[0]):
        b = table[data[i]]
        alnum = b >> 7
        if alnum:
            first = b if length == 0 else first
            w = (w << _S8) | np.uint64(b)
            length += 1
            if (length & 7) == 0:
                h = (h ^ w) * _K1
                w = np.uint64(0)
        else:
            if length:
                g = (h ^ w ^ np.uint64(length)) * _K1
                out_h[count] = g ^ (g >> _S29)
                out_num[count] = 0xB0 <= first <= 0xB9
                count += 1
                h, w, length = _SEED, np.uint64(0), 0
            if b:
                g = (_SEED ^ (np.uint64(b) << _S56)) * _K1
                out_h[count] = g ^ (g >> _S29)
                out_num[count] = True
                count += 1
    if length:
        g = (h ^ w ^ np.uint64(length)) * _K1
        out_h[count] = g ^ (g >> _S29)
        out_num[count] = 0xB0 <= first <= 0xB9
        count += 1
    return count


@njit(cache=True, nogil=True)
def _candidates_kernel(
    h: U64,
    stop_table: U64,
    stop_shift: np.uint64,
    n: int,
    bitmap: npt.NDArray[np.uint8],
    shift: np.uint64,
    out_line: npt.NDArray[np.int64],
    out_g: U64,
) -> int:
    """The n-grams of content tokens (stopwords dropped, never across a line) that the bitmap of
    indexed n-grams may hold, with their line: the same n-gram hash as `_ngram_hashes`."""
    count = 0
    line = 0
    run = 0  # content tokens since the line began
    top = np.uint64(1)  # P ** (n - 1): the weight of the token leaving the window
    for _ in range(n - 1):
        top *= _P
    ring = np.zeros(n, dtype=np.uint64)
    at = 0
    g = np.uint64(0)
    for i in range(h.shape[0]):
        x = h[i]
        if x == _NL_HASH:
            line += 1
            run = 0
            g = np.uint64(0)
            continue
        if stop_table[(x >> stop_shift) & _STOP_MASK] == x:
            continue
        if run >= n:
            g -= ring[at] * top
        g = g * _P + x
        ring[at] = x
        at = at + 1 if at + 1 < n else 0
        run += 1
        slot = g >> shift
        if run >= n and (bitmap[slot >> _S3] >> (slot & _LOW3)) & 1:
            out_line[count] = line
            out_g[count] = g
            count += 1
    return count


def _hash_tokens(data: bytes | memoryview) -> U64:
    """Hash of every token of `data` in order; each b"\n" is a token of its own (_NL_HASH)."""
    return _tokenise(data)[0]


def _tokenise(data: bytes | memoryview) -> tuple[U64, npt.NDArray[np.bool_]]:
    """Token hashes, and whether each token is a number or symbol rather than a word (it starts
    with a digit or is a symbol)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    out_h = np.empty(len(data) + 1, dtype=np.uint64)
    out_num = np.empty(len(data) + 1, dtype=np.bool_)
    count = _tokenise_kernel(arr, _TABLE_ARRAY, out_h, out_num)
    return out_h[:count], out_num[:count]


_NL_HASH = _hash_tokens(b"\n")[0]


def _stop_table() -> tuple[U64, np.uint64, np.uint64]:
    """A collision-free table of the stopwords' hashes, small enough to stay in L1 cache."""
    hashes = _hash_tokens(" ".join(sorted(STOPWORDS)).encode())
    for bits in range(12, 17):
        mask = np.uint64((1 << bits) - 1)
        for shift in range(48, -1, -1):
            slots = (hashes >> np.uint64(shift)) & mask
            if len(np.unique(slots)) == len(hashes):
                table = np.zeros(1 << bits, dtype=np.uint64)
                table[slots] = hashes
                return table, np.uint64(shift), mask
    raise AssertionError("no collision-free slot function for STOPWORDS")


_STOP_TABLE, _STOP_SHIFT, _STOP_MASK = _stop_table()


def _content_hashes(data: bytes) -> U64:
    """Token hashes of `data` without stopwords; newlines kept as _NL_HASH."""
    h = _hash_tokens(data)
    return h[_not_stopword(h)]


def _not_stopword(h: U64) -> npt.NDArray[np.bool_]:
    slot = h >> _STOP_SHIFT
    slot &= _STOP_MASK
    return _STOP_TABLE[slot] != h


def _ngram_hashes(h: U64, n: int) -> U64:
    """Hash of each window of n consecutive content tokens (windows with a newline included)."""
    m = len(h) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    g = h[:m].copy()
    for k in range(1, n):
        g *= _P
        g += h[k : k + m]
    return g


def _has_newline(h: U64, at: npt.NDArray[np.intp], n: int) -> npt.NDArray[np.bool_]:
    bad = np.zeros(len(at), dtype=bool)
    for k in range(n):
        bad |= h[at + k] == _NL_HASH
    return bad


@dataclass(frozen=True)
class Hit:
    line: int  # 0-based index of the line (unit) within the scanned bytes
    key: str  # the index entry that matched
    coverage: float  # IDF-weighted fraction of the entry's distinct n-grams present in the line
    matched: int  # number of the entry's distinct n-grams present in the line
    total: int  # number of the entry's distinct n-grams


@dataclass
class NgramIndex:
    """Distinct n-gram hashes of the indexed entries, with postings and IDF weights."""

    n: int
    keys: list[str]  # indexed entries, by entry id
    hashes: U64  # sorted distinct n-gram hashes
    ptr: npt.NDArray[np.int64]  # postings of hashes[i]: entries[ptr[i]:ptr[i + 1]]
    entries: npt.NDArray[np.int64]
    idf: npt.NDArray[np.float64]  # per n-gram
    entry_weight: npt.NDArray[np.float64]  # sum of idf over each entry's n-grams
    entry_total: npt.NDArray[np.int64]  # distinct n-grams per entry
    too_short: list[str] = field(default_factory=list)
    boilerplate: int = 0  # n-grams dropped for appearing in too many entries
    _bitmap: npt.NDArray[np.uint8] = field(default_factory=lambda: np.zeros(1, dtype=np.uint8))
    _shift: int = 63

    @classmethod
    def build(
        cls,
        entries: Iterable[tuple[str, str]],
        n: int = DEFAULT_N,
        min_ngrams: int = DEFAULT_MIN_NGRAMS,
        boilerplate_fraction: float = BOILERPLATE_FRACTION,
        numeric_weight: float = NUMERIC_WEIGHT,
    ) -> NgramIndex:
        names: list[str] = []
        texts: list[str] = []
        for key, text in entries:
            names.append(key)
            texts.append(text.replace("\n", " "))
        h, numeric = _tokenise("\n".join(texts).encode())
        content = _not_stopword(h)
        h, numeric = h[content], numeric[content]
        g = _ngram_hashes(h, n)
        entry = np.cumsum(h == _NL_HASH)[: len(g)]
        ok = ~_has_newline(h, np.arange(len(g)), n)
        g_numeric = np.ones(len(g), dtype=bool)
        for k in range(n):
            g_numeric &= numeric[k : k + len(g)]
        pairs = np.unique(np.stack([entry[ok].astype(np.uint64), g[ok]]), axis=1)
        entry_of, gram = pairs[0].astype(np.int64), pairs[1]

        uniq, inverse, df = np.unique(gram, return_inverse=True, return_counts=True)
        factor = np.ones(len(uniq))
        factor[np.searchsorted(uniq, g[ok][g_numeric[ok]])] = numeric_weight
        limit = max(BOILERPLATE_MIN_ENTRIES, boilerplate_fraction * len(names))
        common = df > limit
        keep = ~common[inverse]
        per_entry = np.bincount(entry_of[keep], minlength=len(names))
        long_enough = per_entry >= min_ngrams
        keep &= long_enough[entry_of]
        too_short = [names[i] for i in np.flatnonzero(~long_enough)]
        idf_all = np.log1p(len(names) / df) * factor

        ids = np.flatnonzero(long_enough)
        new_id = np.full(len(names), -1, dtype=np.int64)
        new_id[ids] = np.arange(len(ids))
        entry_of, gi = new_id[entry_of[keep]], inverse[keep]
        order = np.lexsort((entry_of, gi))
        entry_of, gi = entry_of[order], gi[order]
        used, gi_new = np.unique(gi, return_inverse=True)
        counts = np.bincount(gi_new, minlength=len(used))
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        idf = idf_all[used]
        index = cls(
            n=n,
            keys=[names[i] for i in ids],
            hashes=uniq[used],
            ptr=ptr,
            entries=entry_of,
            idf=idf,
            entry_weight=np.bincount(entry_of, weights=idf[gi_new], minlength=len(ids)).astype(
                np.float64
            ),
            entry_total=np.bincount(entry_of, minlength=len(ids)),
            too_short=too_short,
            boilerplate=int(common.sum()),
        )
        index._make_bitmap()
        return index

    def _make_bitmap(self) -> None:
        """A bit per slot of the top bits of the n-gram hashes (about 1 in 32 set): most
        n-grams of scanned text are ruled out by one bit test in cache."""
        bits = min(27, max(16, math.ceil(math.log2(max(len(self.hashes), 1))) + 5))
        self._shift = 64 - bits
        flags = np.zeros(1 << bits, dtype=bool)
        flags[self.hashes >> np.uint64(self._shift)] = True
        self._bitmap = np.packbits(flags, bitorder="little")

    def __len__(self) -> int:
        return len(self.keys)

    def scan(self, data: bytes, min_coverage: float = DEFAULT_THRESHOLD) -> list[Hit]:
        """Every (line, entry) pair of `data` (lines split at b"\\n") whose coverage reaches
        `min_coverage`, ordered by line then key."""
        lines: list[npt.NDArray[np.int64]] = []
        grams: list[npt.NDArray[np.int64]] = []
        first_line = 0
        pos = 0
        view = memoryview(data)
        while pos < len(data):
            cut = data.find(b"\n", pos + BLOCK_BYTES)
            end = len(data) if cut < 0 else cut + 1
            found = self._lookup(view[pos:end])
            if found is not None:
                lines.append(found[0] + first_line)
                grams.append(found[1])
            first_line += data.count(b"\n", pos, end)
            pos = end
        if not lines:
            return []
        return self._aggregate(np.concatenate(lines), np.concatenate(grams), min_coverage)

    def _lookup(
        self, block: bytes | memoryview
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
        """(line within block, n-gram id) of each indexed n-gram occurrence in `block`."""
        if not len(self.hashes):
            return None
        h = _hash_tokens(block)
        out_line = np.empty(len(h), dtype=np.int64)
        out_g = np.empty(len(h), dtype=np.uint64)
        found = _candidates_kernel(
            h, _STOP_TABLE, _STOP_SHIFT, self.n, self._bitmap, np.uint64(self._shift),
            out_line, out_g,
        )  # fmt: skip
        if not found:
            return None
        line, g = out_line[:found], out_g[:found]
        idx = np.searchsorted(self.hashes, g)
        idx[idx == len(self.hashes)] = 0
        ok = self.hashes[idx] == g
        if not ok.any():
            return None
        return line[ok], idx[ok].astype(np.int64)

    def _aggregate(
        self, line: npt.NDArray[np.int64], gram: npt.NDArray[np.int64], min_coverage: float
    ) -> list[Hit]:
        n_grams = len(self.hashes)
        pair = np.unique(line * n_grams + gram)
        line, gram = pair // n_grams, pair % n_grams
        counts = self.ptr[gram + 1] - self.ptr[gram]
        line_rep = np.repeat(line, counts)
        gram_rep = np.repeat(gram, counts)
        offset = np.arange(len(gram_rep)) - np.repeat(np.cumsum(counts) - counts, counts)
        entry = self.entries[self.ptr[gram_rep] + offset]
        n_entries = len(self.keys)
        le, inv = np.unique(line_rep * n_entries + entry, return_inverse=True)
        weight = np.bincount(inv, weights=self.idf[gram_rep], minlength=len(le))
        matched = np.bincount(inv, minlength=len(le))
        hit_line, hit_entry = le // n_entries, le % n_entries
        coverage = weight / self.entry_weight[hit_entry]
        hits = [
            Hit(
                line=int(hit_line[i]),
                key=self.keys[hit_entry[i]],
                coverage=min(1.0, float(coverage[i])),
                matched=int(matched[i]),
                total=int(self.entry_total[hit_entry[i]]),
            )
            for i in np.flatnonzero(coverage >= min_coverage - 1e-12)
        ]
        hits.sort(key=lambda hit: (hit.line, hit.key))
        return hits


def token_hashes(data: bytes | memoryview) -> tuple[U64, npt.NDArray[np.bool_]]:
    """Every token's hash (stopwords kept; each b"\\n" is NEWLINE_HASH) and whether it is a
    number or symbol: the normalisation above, for exact matching (short_items.py)."""
    return _tokenise(data)


def window_hashes(h: U64, n: int) -> U64:
    """The hash of each window of n consecutive token hashes."""
    return _ngram_hashes(h, n)


NEWLINE_HASH = _NL_HASH
