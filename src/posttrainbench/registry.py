"""A generic name → object registry with lazy imports, aliases and entry-point plug-ins.

Values may be registered as objects or as "package.module:attr" strings imported on first use,
so optional backends (docker, vllm, ray …) never slow down or break `import posttrainbench`.
Third-party packages add entries through the entry-point group `posttrainbench.<kind>`; they are
loaded on the first lookup miss, and a broken plug-in is a warning, not a crash.
"""

from __future__ import annotations

import difflib
import importlib
import logging
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from posttrainbench.errors import UnknownNameError

T = TypeVar("T")
log = logging.getLogger(__name__)


def import_ref(ref: str) -> object:
    module, _, attr = ref.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


# The kinds `ptb list KIND` shows, by registry kind.
_LISTED = {"model": "models", "benchmark": "benchmarks", "agent": "agents",
           "sandbox": "sandboxes", "suite": "suites"}  # fmt: skip


class Registry(Generic[T]):
    def __init__(self, kind: str, base: type | None = None) -> None:
        self.kind = kind
        self.base = base
        self._entries: dict[str, T | str] = {}
        self._aliases: dict[str, str] = {}
        self._plugins_loaded = False

    def register(self, name: str, value: T | str, *, aliases: tuple[str, ...] = ()) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = value
        for alias in aliases:
            self._aliases[alias] = name

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return self._canonical(name) is not None

    def __iter__(self) -> Iterator[tuple[str, T]]:
        for name in self.names():
            yield name, self.get(name)

    def get(self, name: str) -> T:
        canonical = self._canonical(name)
        if canonical is None:
            self._load_plugins()
            canonical = self._canonical(name)
        if canonical is None:
            raise self._miss(name)
        value = self._entries[canonical]
        if isinstance(value, str):
            value = self._resolve(canonical, value)
        return value

    def _canonical(self, name: str) -> str | None:
        if name in self._entries:
            return name
        if name in self._aliases:
            return self._aliases[name]
        lowered = {k.lower(): k for k in self._entries}
        return lowered.get(name.lower())

    def _resolve(self, name: str, ref: str) -> T:
        obj = import_ref(ref)
        if self.base is not None and not (
            isinstance(obj, self.base) or (isinstance(obj, type) and issubclass(obj, self.base))
        ):
            raise TypeError(f"{self.kind} {name!r} ({ref}) is not a {self.base.__name__}")
        self._entries[name] = obj  # type: ignore[assignment]
        return obj  # type: ignore[return-value]

    def _miss(self, name: str) -> UnknownNameError:
        known = sorted(self._entries)
        close = difflib.get_close_matches(name, known + list(self._aliases), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        listed = _LISTED.get(self.kind)
        see = f"; see `ptb list {listed}`" if listed else ""
        return UnknownNameError(
            f"unknown {self.kind} {name!r}", f"{hint}known: {', '.join(known)}{see}"
        )

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=f"posttrainbench.{self.kind}s"):
            if ep.name in self._entries:
                continue
            try:
                self._entries[ep.name] = ep.load()
            except Exception as exc:  # a broken plug-in must not break ptb
                log.warning("skipping %s plug-in %r: %s", self.kind, ep.name, exc)
