"""Pydantic validation errors said in plain words: where, what is wrong, and for an unknown key
the closest known one ("did you mean")."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

# pydantic's wording that says nothing to a user, as a prefix of the message.
_NOISE = ("Value error, ", "Assertion failed, ")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
    return found


def _field(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (name, info.alias):
            return info.annotation
    return None


def known_keys(model: type[BaseModel]) -> list[str]:
    """The keys a user writes for `model`: aliases where they exist, else field names."""
    return [info.alias or name for name, info in model.model_fields.items()]


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model that holds the last part of `loc` (list indices are stepped over)."""
    current: type[BaseModel] | None = model
    for part in loc[:-1]:
        if current is None or isinstance(part, int):
            continue
        annotation = _field(current, part)
        nested = _models_in(annotation) if annotation is not None else []
        current = nested[0] if len(nested) == 1 else None
    return current


def _one(err: ErrorDetails, model: type[BaseModel] | None) -> str:
    loc = tuple(err["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    key = str(loc[-1]) if loc else ""
    if err["type"] == "extra_forbidden":
        holder = _model_at(model, loc) if model is not None else None
        known = known_keys(holder) if holder is not None else []
        close = difflib.get_close_matches(key, known, n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {where!r}{guess}"
    if err["type"] == "missing":
        return f"{where}: missing (required)"
    message = err["msg"]
    for noise in _NOISE:
        message = message.removeprefix(noise)
    got = err.get("input")
    shown = f" (got {got!r})" if isinstance(got, str | int | float | bool) else ""
    return f"{where}: {message[:1].lower()}{message[1:]}{shown}"


def plain(exc: ValidationError, model: type[BaseModel] | None = None) -> str:
    """One line for a validation error: its first problem, and how many more there are."""
    # An unknown key first: a misspelt key is also the "missing" one it was meant to be.
    errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
    if not errors:
        return str(exc).splitlines()[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return _one(errors[0], model) + more
