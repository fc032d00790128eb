"""Tamper check: a SHA-256 manifest of the evaluator files, taken at prepare and after solve.

Threat model: detects an agent editing, deleting or adding files under evaluate.py/templates/
(rule 4). It does not protect the score — the harness never uses the workspace's copy — it records
the attempt as evidence. The expected files are re-derived from the harness's own code, not read
back from a manifest an agent without isolation could have rewritten; the files compared are the
frozen copy taken at collect. Reads files only; never runs agent code.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from posttrainbench.integrity.base import Check, CheckContext, result
from posttrainbench.records import CheckResult, Evidence, Versioned


class Manifest(Versioned):
    files: dict[str, str]  # path relative to the workspace → sha256 ("symlink:<target>" for links)


def _digest(path: Path) -> str:
    """sha256 of a regular file; anything else is described, never opened for reading (a FIFO
    would block), and an unreadable file is evidence, not a crash."""
    try:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            return f"symlink:{os.readlink(path)}"
        if not stat.S_ISREG(st.st_mode):
            return f"special:{stat.filemode(st.st_mode)}"
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        return f"unreadable:{exc.strerror or exc}"


def _walk(base: Path) -> list[Path]:
    """base itself when it is not a directory, else everything below it (links not followed)."""
    if base.is_symlink() or not base.is_dir():
        return [base] if os.path.lexists(base) else []
    found = []
    for dirpath, dirs, names in os.walk(base, onerror=None, followlinks=False):
        here = Path(dirpath)
        found += [here / n for n in names]
        found += [here / d for d in dirs if (here / d).is_symlink()]
    return sorted(found)


def snapshot(workspace: Path, roots: tuple[str, ...]) -> Manifest:
    files = {
        path.relative_to(workspace).as_posix(): _digest(path)
        for root in roots
        for path in _walk(workspace / root)
    }
    return Manifest(files=files)


def compare(before: Manifest, after: Manifest) -> CheckResult:
    changed = sorted(
        k for k in before.files if k in after.files and before.files[k] != after.files[k]
    )
    removed = sorted(set(before.files) - set(after.files))
    added = sorted(set(after.files) - set(before.files))
    evidence = [
        Evidence(kind="file", path=path, summary=f"{what} evaluator file {path}")
        for what, names in (("modified", changed), ("deleted", removed), ("added", added))
        for path in names
    ]
    return result("tamper", evidence)


class TamperCheck(Check):
    name = "tamper"

    def run(self, ctx: CheckContext) -> CheckResult:
        from posttrainbench.workspace import builder

        with tempfile.TemporaryDirectory(prefix="ptb-evaluator-") as tmp:
            builder.write_evaluator(Path(tmp), ctx.model, ctx.bench)
            expected = snapshot(Path(tmp), builder.EVALUATOR_PATHS)
        return compare(expected, snapshot(ctx.frozen, builder.EVALUATOR_PATHS))
