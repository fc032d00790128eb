"""The base of every record: `Record`, `Versioned` (schema version, migrations), durations."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from types import UnionType
from typing import Any, Self, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

SCHEMA_VERSION = 4


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)")


def now() -> datetime:
    return datetime.now(UTC)


def parse_duration(text: str) -> int:
    """'10h', '15m', '20s', '1h30m' or a bare number of seconds → whole seconds (≥ 1)."""
    s = text.strip().lower()
    if s.startswith("-"):
        raise ValueError(f"duration {text!r} must be positive")
    if s.isdigit():
        seconds = float(s)
    else:
        parts = _DURATION.findall(s)
        if not parts or _DURATION.sub("", s).strip():
            raise ValueError(f"malformed duration {text!r}; use e.g. 10h, 15m, 20s or 1h30m")
        seconds = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if round(seconds) < 1:
        raise ValueError(f"duration {text!r} is under one second")
    return round(seconds)


def format_duration(seconds: float) -> str:
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


# record class name → {version v: function upgrading a v dict to v + 1}. A record whose layout
# changes bumps SCHEMA_VERSION and registers the step here, so old run directories still load.
MIGRATIONS: dict[str, dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}


def migration(record: str, from_version: int) -> Callable[..., Any]:
    def register(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., Any]:
        MIGRATIONS.setdefault(record, {})[from_version] = fn
        return fn

    return register


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


STORED = {"stored": True}  # validation context of records read from disk


class Versioned(Record):
    """A record stored on its own: checks `schema_version` and migrates old input.

    Read from disk (validation context `STORED`), a record without `schema_version` is foreign;
    built in code, it takes the current version. Current records validate from JSON entirely in
    pydantic-core (no model-level Python hook, which would force JSON through Python objects);
    an older one fails that pass with `schema_upgrade` and is parsed again, migrated by
    `upgrade` (with every record nested in it), then validated."""

    schema_version: int = Field(default=SCHEMA_VERSION, strict=True)

    @field_validator("schema_version")
    @classmethod
    def _check_version(cls, version: int) -> int:
        if version < 1:
            raise ValueError(f"schema_version {version!r} is not a positive integer")
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"schema_version {version} is newer than this ptb understands ({SCHEMA_VERSION});"
                " upgrade posttrainbench"
            )
        if version < SCHEMA_VERSION:
            raise PydanticCustomError(
                UPGRADE_ERROR,
                "schema_version {version} needs upgrading: validate with"
                " model_validate/model_validate_json, which migrate it",
                {"version": version},
            )
        return version

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        if isinstance(obj, dict):
            if "schema_version" not in obj and _stored(kwargs):
                raise _foreign(cls, obj)
            obj = upgrade(cls, obj)
        return super().model_validate(obj, *args, **kwargs)

    @classmethod
    def model_validate_json(
        cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any
    ) -> Self:
        """Current records: one pass in pydantic-core. Anything else (an older version, an
        error) is read again through `model_validate`, which migrates it or names the problem
        the way it would for a dict: a stored file without `schema_version` is foreign first."""
        try:
            record = super().model_validate_json(json_data, *args, **kwargs)
        except ValidationError as exc:
            try:
                data = json.loads(json_data)
            except ValueError:
                raise exc from None
            return cls.model_validate(data, *args, **kwargs)
        if "schema_version" not in record.model_fields_set and _stored(kwargs):
            raise _foreign(cls, json_data)
        return record


def _stored(validate_kwargs: dict[str, Any]) -> bool:
    """Whether a validation call reads from disk (context `STORED`)."""
    return bool((validate_kwargs.get("context") or {}).get("stored"))


def _foreign(cls: type[BaseModel], data: Any) -> ValidationError:
    reason = PydanticCustomError("foreign_record", "no schema_version: not a posttrainbench record")
    return ValidationError.from_exception_data(
        cls.__name__, [InitErrorDetails(type=reason, loc=("schema_version",), input=data)]
    )


UPGRADE_ERROR = "schema_upgrade"


def upgrade(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """A stored dict of `model` brought to SCHEMA_VERSION, with the records nested in it.

    Steps come from MIGRATIONS; a version without a step only gets its number bumped. The input
    is never mutated. Anything not a dict (or a version that is not an int) is left for the
    validator to reject."""
    if issubclass(model, Versioned):
        version = data.get("schema_version")
        if type(version) is int and 1 <= version < SCHEMA_VERSION:
            steps = MIGRATIONS.get(model.__name__, {})
            data = dict(data)
            while version < SCHEMA_VERSION:
                data = steps[version](data) if version in steps else data
                version += 1
            data["schema_version"] = version
    for name, (shape, sub) in _nested_records(model).items():
        value = data.get(name)
        if shape == "one" and isinstance(value, dict):
            new: Any = upgrade(sub, value)
            changed = new is not value
        elif shape == "list" and isinstance(value, list):
            new = [upgrade(sub, v) if isinstance(v, dict) else v for v in value]
            changed = any(a is not b for a, b in zip(new, value, strict=True))
        elif shape == "dict" and isinstance(value, dict):
            new = {k: upgrade(sub, v) if isinstance(v, dict) else v for k, v in value.items()}
            changed = any(new[k] is not v for k, v in value.items())
        else:
            continue
        if changed:
            data = {**data, name: new}
    return data


@cache
def _nested_records(model: type[BaseModel]) -> dict[str, tuple[str, type[BaseModel]]]:
    """Fields of `model` holding records: name → (one | list | dict, record class)."""
    found = {}
    for name, field in model.model_fields.items():
        shape, sub = _record_shape(field.annotation)
        if sub is not None:
            found[name] = (shape, sub)
    return found


def _record_shape(annotation: Any) -> tuple[str, type[BaseModel] | None]:
    if isinstance(annotation, type) and issubclass(annotation, Record):
        return "one", annotation
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, UnionType):
        inner = [_record_shape(a) for a in args if a is not type(None)]
        return next(((s, m) for s, m in inner if m is not None and s == "one"), ("", None))
    if origin is list and args:
        shape, sub = _record_shape(args[0])
        return ("list", sub) if shape == "one" else ("", None)
    if origin is dict and len(args) == 2:
        shape, sub = _record_shape(args[1])
        return ("dict", sub) if shape == "one" else ("", None)
    return "", None
