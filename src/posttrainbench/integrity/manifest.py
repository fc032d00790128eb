"""Tamper check: a SHA-256 manifest of the evaluator files, taken at prepare and after solve.

Threat model: detects an agent editing, deleting or adding files under evaluate.py/templates/
(rule 4). It does not protect the score — the harness never uses the workspace's copy — it records
the attempt as evidence. Reads files only; never runs agent code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from posttrainbench.records import CheckResult, Versioned


class Manifest(Versioned):
    files: dict[str, str]  # path relative to the workspace → sha256 ("symlink:<target>" for links)


def _digest(path: Path) -> str:
    if path.is_symlink():
        return f"symlink:{path.readlink()}"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(workspace: Path, roots: tuple[str, ...]) -> Manifest:
    files: dict[str, str] = {}
    for root in roots:
        base = workspace / root
        paths = [base] if base.is_file() or base.is_symlink() else sorted(base.rglob("*"))
        for path in paths:
            if path.is_file() or path.is_symlink():
                files[path.relative_to(workspace).as_posix()] = _digest(path)
    return Manifest(files=files)


def compare(before: Manifest, after: Manifest) -> CheckResult:
    changed = sorted(
        k for k in before.files if k in after.files and before.files[k] != after.files[k]
    )
    removed = sorted(set(before.files) - set(after.files))
    added = sorted(set(after.files) - set(before.files))
    reasons = [
        f"{what} evaluator file(s): {', '.join(names)}"
        for what, names in (("modified", changed), ("deleted", removed), ("added", added))
        if names
    ]
    return CheckResult(
        name="tamper",
        passed=not reasons,
        reasons=reasons,
        evidence={"modified": changed, "deleted": removed, "added": added},
    )
