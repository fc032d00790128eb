"""What a pickle would import if it were loaded, read with `pickletools` (never unpickled).

A pickle runs code through the globals it imports (`GLOBAL`, `STACK_GLOBAL`, `INST`): `torch.load`
of a state dict needs only the tensor-rebuilding ones (`TENSOR_GLOBALS`). Trainer's
`training_args.bin`, written into every `save_model` folder, adds the classes of its config
(`TRAINING_STATE`). Anything else in a file left in final_model (`posix.system`, `builtins.exec`,
`subprocess.Popen` …) is an exploit attempt aimed at whoever loads it: decisive evidence.

Both torch formats are read: the zip archive (every `*.pkl` member, bounded) and the legacy
stream of pickles one after another. A global whose name cannot be read without running the
pickle (a `STACK_GLOBAL` over computed values, an extension code) is reported as such.
"""

from __future__ import annotations

import io
import pickletools
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, cast

MAX_PICKLE_BYTES = 64 << 20  # one pickle (a zip member, or the opcodes of a legacy file)
MAX_PICKLES = 8  # a legacy torch file: magic, protocol, sys info, the object, storage keys
UNRESOLVED = "<computed: unreadable without running the pickle>"

_TENSOR_NAMES = """
torch._utils._rebuild_tensor torch._utils._rebuild_tensor_v2 torch._utils._rebuild_tensor_v3
torch._utils._rebuild_parameter torch._utils._rebuild_parameter_with_state
torch._utils._rebuild_device_tensor_from_numpy torch._utils._rebuild_meta_tensor_no_storage
torch._utils._rebuild_wrapper_subclass torch._tensor._rebuild_from_type_v2
torch.storage.UntypedStorage torch.storage.TypedStorage torch.storage._load_from_bytes
torch.Size torch.device torch.dtype collections.OrderedDict _codecs.encode builtins.set
builtins.frozenset builtins.complex builtins.slice builtins.bytearray
numpy.core.multiarray._reconstruct numpy._core.multiarray._reconstruct numpy.ndarray numpy.dtype
numpy.core.multiarray.scalar numpy._core.multiarray.scalar
"""
TENSOR_GLOBALS = frozenset(_TENSOR_NAMES.split())
_TENSOR_PATTERNS = (
    re.compile(r"torch\.\w+Storage"),  # torch.FloatStorage, torch.BFloat16Storage …
    re.compile(r"torch\.(?:float|bfloat|int|uint|complex)\d+|torch\.bool|torch\.half"),
    re.compile(r"numpy\.dtypes\.\w+DType"),
)
# The classes Trainer's training_args.bin pickles (module, then a class name: CamelCase).
TRAINING_STATE = re.compile(
    r"(?:transformers\.(?:training_args(?:_seq2seq)?|trainer_utils|trainer_pt_utils|debug_utils)"
    r"|trl\.trainer\.\w+_config|accelerate\.state|accelerate\.utils\.dataclasses"
    r"|peft\.utils\.peft_types|peft\.tuners\.[\w.]+\.config)"
    r"\.[A-Z][A-Za-z0-9]*"
)
_STRINGS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING"}
    | {"SHORT_BINSTRING"}
)


@dataclass
class PickleImports:
    """The globals a file's pickles import, and why reading stopped early, if it did."""

    globals: list[str] = field(default_factory=list)
    error: str | None = None
    pickles: int = 0  # pickles found (a zip archive may hold none)

    def foreign(self) -> list[str]:
        """Globals beyond a saved tensor's and a trainer's config: an exploit attempt."""
        return [g for g in self.globals if classify(g) == "foreign"]


def classify(name: str) -> str:
    """`tensor`, `training_state` or `foreign` for one imported global `module.name`."""
    if name in TENSOR_GLOBALS or any(p.fullmatch(name) for p in _TENSOR_PATTERNS):
        return "tensor"
    if TRAINING_STATE.fullmatch(name):
        return "training_state"
    return "foreign"


_PROTOCOL_0 = re.compile(rb"[(\]})]*[ci][\w.]+\n[\w.]+\n")  # marks, then GLOBAL or INST


def sniff(head: bytes) -> bool:
    """Whether a file that starts with `head` is a pickle (protocol 2 and later, or 0 and 1
    opening with an import) or a zip archive (torch's format)."""
    return head[:1] == b"\x80" or head[:4] == b"PK\x03\x04" or bool(_PROTOCOL_0.match(head))


def sniff_strong(head: bytes) -> bool:
    """A PROTO opcode or a zip header: no text file starts so."""
    return head[:1] == b"\x80" or head[:4] == b"PK\x03\x04"


def read_imports(f: BinaryIO) -> PickleImports:
    """The globals of a pickle file or torch zip archive, opcode by opcode; never loads it."""
    out = PickleImports()
    head = f.read(4)
    f.seek(0)
    try:
        if head == b"PK\x03\x04":
            with zipfile.ZipFile(f) as archive:
                for info in archive.infolist():
                    if not info.filename.endswith(".pkl"):
                        continue
                    if info.file_size > MAX_PICKLE_BYTES:
                        out.error = f"{info.filename} is over {MAX_PICKLE_BYTES >> 20} MiB: unread"
                        continue
                    data = archive.read(info)
                    _collect(io.BytesIO(data), out, 1)
        else:
            _collect(cast(BinaryIO, _Bounded(f, MAX_PICKLE_BYTES)), out, MAX_PICKLES)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        out.error = f"{type(exc).__name__}: {exc}"[:300]
    return out


def _collect(f: BinaryIO, out: PickleImports, count: int) -> None:
    """Globals of up to `count` pickles one after another in `f` (a legacy torch file holds
    several; its raw tensor bytes follow the last and are not read)."""
    for n in range(count):
        start = f.tell()
        if n and f.read(1) != b"\x80":  # the first may be protocol 0, without a PROTO opcode
            return
        f.seek(start)
        out.pickles += 1
        for name in _globals(f):
            if name not in out.globals:
                out.globals.append(name)


def _globals(f: BinaryIO) -> Iterator[str]:
    """The imports of one pickle. Strings are followed through the memo so a `STACK_GLOBAL`
    whose module and name were memoised and fetched back is still read."""
    memo: dict[int, object] = {}
    recent: list[object] = []  # what the last opcodes pushed (a string, or None for anything else)
    for op, arg, _ in pickletools.genops(f):
        pushed: object = None
        if op.name in ("GLOBAL", "INST"):
            module, _, name = str(arg).partition(" ")
            yield f"{module}.{name}"
        elif op.name == "STACK_GLOBAL":
            pair = recent[-2:] if len(recent) >= 2 else [None, None]
            if isinstance(pair[0], str) and isinstance(pair[1], str):
                yield f"{pair[0]}.{pair[1]}"
            else:
                yield UNRESOLVED
        elif op.name in ("EXT1", "EXT2", "EXT4"):
            yield f"<extension code {arg}>"
        elif op.name in _STRINGS:
            pushed = arg.decode("latin-1") if isinstance(arg, bytes) else arg
        elif op.name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
            continue
        elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(cast(int, arg))] = recent[-1] if recent else None
            continue
        elif op.name in ("GET", "BINGET", "LONG_BINGET"):
            pushed = memo.get(int(cast(int, arg)))
        recent = [*recent[-1:], pushed]


class _Bounded(io.RawIOBase):
    """A read-only view of the first `limit` bytes of `f` (a pickle's opcodes are parsed only
    that far: a crafted giant string stops at the bound)."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self._f, self._left, self._pos = f, limit, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence != 0:
            raise ValueError("only absolute seeks")
        self._left += self._pos - offset
        self._pos = self._f.seek(offset)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._f.read(size)
        self._left -= len(data)
        self._pos += len(data)
        return data

    def readline(self, size: int | None = -1) -> bytes:
        size = self._left if size is None or size < 0 else min(size, self._left)
        data = self._f.readline(size)
        self._left -= len(data)
        self._pos += len(data)
        return data
