"""Reading and writing records on disk: atomic JSON writes, run.json loading, results scanning."""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from posttrainbench.errors import ResultsDirError
from posttrainbench.records import STORED, RunRecord
from posttrainbench.results.layout import RunPaths

M = TypeVar("M", bound=BaseModel)


def write_json(path: Path, record: BaseModel) -> None:
    """Write atomically: a crash leaves either the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(record.model_dump_json(indent=2))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def describe_error(exc: ValidationError) -> str:
    """The first problem of a validation error as one line: `field.path: message`."""
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"]) or "(top level)"
    return f"{where}: {err['msg']}"


def read_json(path: Path | str, model: type[M]) -> M:
    """Load a stored record; any problem is one ResultsDirError naming the file and the field."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as exc:
        raise ResultsDirError(f"{path} does not exist", "is this a run directory?") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsDirError(f"cannot read {path}: {exc}", "check the file's permissions") from exc
    try:
        return model.model_validate_json(text, context=STORED)
    except ValidationError as exc:
        raise ResultsDirError(
            f"{path} is not a valid {model.__name__}: {describe_error(exc)}",
            "was it edited by hand, or written by another program?",
        ) from exc


def load_run(run_dir: Path) -> RunRecord:
    return read_json(RunPaths(run_dir).run_json, RunRecord)


def save_run(run_dir: Path, record: RunRecord) -> None:
    write_json(RunPaths(run_dir).run_json, record)


def scan_runs(root: Path) -> Iterator[tuple[Path, RunRecord | ResultsDirError]]:
    """Every run directory under root (any depth, sorted), with its record or why it can't load.

    A run directory is one holding a `run.json`; the walk never descends into it (run.json files
    an agent planted in its workspace, home or final_model are not runs of ours) and never follows
    a symlinked directory. A bad run never stops the scan: its error is yielded in place of the
    record, and so is a directory that cannot be listed. Raises only if root is no directory."""
    if not root.is_dir():
        raise ResultsDirError(f"{root} is not a directory", "pass the results dir of a sweep")
    errors: list[OSError] = []

    def unlistable() -> Iterator[tuple[Path, ResultsDirError]]:
        for exc in errors:
            where = Path(exc.filename) if exc.filename else root
            yield where, ResultsDirError(f"cannot list {where}: {exc.strerror}", "check its mode")
        errors.clear()

    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
        yield from unlistable()
        if "run.json" not in filenames:
            dirnames.sort()
            continue
        dirnames.clear()  # prune: nothing below a run directory is a run of ours
        run_dir = Path(dirpath)
        try:
            yield run_dir, read_json(os.path.join(dirpath, "run.json"), RunRecord)
        except ResultsDirError as exc:
            yield run_dir, exc
    yield from unlistable()


def scan_all(root: Path) -> list[tuple[Path, RunRecord | ResultsDirError]]:
    """`scan_runs` collected into a list, with the cyclic garbage collector kept off the records:
    they are acyclic (reference counting frees them), and collections over a heap of thousands
    of them cost as much as parsing them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        found = list(scan_runs(root))
        gc.freeze()  # later collections skip what exists now
        return found
    finally:
        if enabled:
            gc.enable()


def ensure_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".ptb-probe-"):
            pass
    except OSError as exc:
        raise ResultsDirError(
            f"results dir {directory} is not writable: {exc.strerror}",
            "choose another with --results or PTB_RESULTS",
        ) from exc
