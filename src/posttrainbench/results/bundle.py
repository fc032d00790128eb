"""Submission bundles: one run as `run.tar.zst`, checkable and re-scorable anywhere.

`make_bundle` packs the run's records (run.json, prompt.md, integrity/, eval/, the agent's
trajectory and transcript, monitor.csv, egress.jsonl) and the collected final_model/, plus
MANIFEST.json (sha256 and size of every file, ptb version, run id, bundled score) — never the
workspace/, frozen/ or agent/home/. `verify_bundle` extracts it refusing anything that could
land outside the work dir (absolute paths, `..`, links, devices), checks every checksum, and
re-evaluates final_model with the pristine grader as the run did (benchmark, template family of
the base model, recorded eval options and max_tokens): "verified" when the score matches.
"""

from __future__ import annotations

import hashlib
import io
import math
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import zstandard
from pydantic import Field, ValidationError

from posttrainbench import __version__
from posttrainbench.catalog import MODELS
from posttrainbench.errors import ConfigError, EvaluationError, PtbError, ResultsDirError
from posttrainbench.records import STORED, EvalMetrics, Record, RunRecord, Versioned, now
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.store import load_run

BUNDLE_NAME = "run.tar.zst"
MANIFEST_NAME = "MANIFEST.json"
TOLERANCE = 1e-6  # evaluation is greedy and seeded: a re-evaluation gives the same score
_CHUNK = 1 << 20

Verdict = Literal["verified", "mismatch", "corrupt"]
Evaluate = Callable[..., EvalMetrics]


class BundleFile(Record):
    path: str = Field(description="Relative to the run directory, '/'-separated.")
    sha256: str
    size: int


class BundleManifest(Versioned):
    """MANIFEST.json of a bundle."""

    run_id: str
    ptb_version: str
    created_at: datetime = Field(default_factory=now)
    benchmark: str
    base_model: str
    score: float | None = Field(
        description="The evaluated score of final_model in [0, 1] (run.json metrics), if any."
    )
    outcome_score: float | None = Field(default=None, description="The run's final score.")
    outcome_source: str | None = Field(default=None, description="Where that score came from.")
    files: list[BundleFile]


class VerifyReport(Record):
    bundle: str
    run_id: str | None = None
    checksums_ok: bool
    files_checked: int = 0
    bundled_score: float | None = None
    reevaluated_score: float | None = None
    tolerance: float = TOLERANCE
    verdict: Verdict
    problems: list[str] = Field(default_factory=list)
    work_dir: str = Field(description="Where the bundle was extracted.")


# --- making -------------------------------------------------------------------------------------


def _walk(root: Path) -> Iterator[Path]:
    """Regular files below root, sorted; symlinks and other non-files are never bundled."""
    if root.is_symlink() or not root.exists():
        return
    if root.is_file():
        yield root
        return
    for child in sorted(root.iterdir()):
        if child.is_symlink():
            continue
        if child.is_dir():
            yield from _walk(child)
        elif child.is_file():
            yield child


def bundled_files(run_dir: Path) -> list[Path]:
    """What a bundle holds of a run directory (absolute paths, sorted)."""
    p = RunPaths(run_dir)
    picks = [
        p.run_json,
        p.prompt,
        p.integrity_dir,
        p.eval.root,
        p.trajectory,
        p.transcript,
        p.monitor_csv,
        p.egress,
        p.final_model,
    ]
    return [f for pick in picks for f in _walk(pick)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.type = size, 0o644, tarfile.REGTYPE
    return info


def make_bundle(run_dir: Path, out: Path) -> BundleManifest:
    """Write `out/run.tar.zst` for a run directory; returns its manifest."""
    record = load_run(run_dir)
    if record.outcome is None:
        raise ConfigError(
            f"run {record.spec.run_id} has no score yet",
            f"finish it first: ptb run --resume {run_dir}",
        )
    files = bundled_files(run_dir)
    manifest = BundleManifest(
        run_id=record.spec.run_id,
        ptb_version=__version__,
        benchmark=record.spec.benchmark,
        base_model=record.spec.base_model,
        score=record.metrics.score if record.metrics else None,
        outcome_score=record.outcome.score if record.outcome else None,
        outcome_source=record.outcome.source if record.outcome else None,
        files=[
            BundleFile(
                path=f.relative_to(run_dir).as_posix(), sha256=_sha256(f), size=f.stat().st_size
            )
            for f in files
        ],
    )
    out.mkdir(parents=True, exist_ok=True)
    target = out / BUNDLE_NAME
    tmp = target.with_name(f".{BUNDLE_NAME}.part")
    try:
        with (
            tmp.open("wb") as raw,
            zstandard.ZstdCompressor(level=10).stream_writer(raw) as zw,
            tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT) as tar,
        ):
            data = manifest.model_dump_json(indent=2).encode()
            tar.addfile(_tarinfo(MANIFEST_NAME, len(data)), io.BytesIO(data))
            for f, entry in zip(files, manifest.files, strict=True):
                with f.open("rb") as fh:
                    tar.addfile(_tarinfo(entry.path, entry.size), fh)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return manifest


# --- verifying ----------------------------------------------------------------------------------


class UnsafeBundle(Exception):
    """A member that could write outside the work dir, or is no plain file."""


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or name.startswith(("/", "\\")) or "\\" in name:
        raise UnsafeBundle(f"member {name!r} has an absolute or foreign path")
    if any(part in ("..", "") for part in name.rstrip("/").split("/")) or ".." in path.parts:
        raise UnsafeBundle(f"member {name!r} leads outside the bundle")
    return path


def extract(bundle: Path, dest: Path) -> None:
    """Extract plain files and folders into dest; raise UnsafeBundle at the first member that
    is anything else or points outside dest (nothing of it is written)."""
    root = dest.resolve()
    with (
        bundle.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as zr,
        tarfile.open(fileobj=zr, mode="r|") as tar,
    ):
        for member in tar:
            rel = _safe_name(member.name)
            if not (member.isreg() or member.isdir()):
                raise UnsafeBundle(f"member {member.name!r} is not a plain file or folder")
            target = root.joinpath(*rel.parts)
            if not target.resolve().is_relative_to(root):
                raise UnsafeBundle(f"member {member.name!r} leads outside the work dir")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.parent.resolve().is_relative_to(root) or target.is_symlink():
                raise UnsafeBundle(f"member {member.name!r} leads outside the work dir")
            src = tar.extractfile(member)
            assert src is not None  # a regular file
            with target.open("wb") as fh:
                shutil.copyfileobj(src, fh, _CHUNK)


def _check(root: Path, manifest: BundleManifest) -> list[str]:
    problems = []
    listed = set()
    for entry in manifest.files:
        listed.add(entry.path)
        try:
            path = root.joinpath(*_safe_name(entry.path).parts)
        except UnsafeBundle as exc:
            problems.append(f"manifest: {exc}")
            continue
        if not path.is_file():
            problems.append(f"{entry.path}: listed in the manifest, missing from the bundle")
        elif path.stat().st_size != entry.size:
            problems.append(
                f"{entry.path}: {path.stat().st_size} bytes, manifest says {entry.size}"
            )
        elif _sha256(path) != entry.sha256:
            problems.append(f"{entry.path}: sha256 differs from the manifest")
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel != MANIFEST_NAME and rel not in listed:
            problems.append(f"{rel}: in the bundle, not in the manifest")
    return problems


def _reevaluate(root: Path, record: RunRecord, evaluate: Evaluate, out: Path) -> EvalMetrics:
    spec, metrics = record.spec, record.metrics
    assert metrics is not None
    limit = metrics.params.get("limit")
    kwargs: dict[str, Any] = {
        "split": metrics.split,
        "limit": int(limit) if isinstance(limit, int | float) else None,
        "template_family": MODELS.get(spec.base_model).template_family,
        "max_tokens": metrics.max_tokens,
        "seed": spec.seed,
        "judge_model": spec.judge_model,
        "judge_base_url": spec.judge_base_url,
        "backend": spec.eval_backend,
    }
    return evaluate(RunPaths(root).final_model, spec.benchmark, out, **kwargs)


def verify_bundle(
    bundle: Path, work_dir: Path | None = None, *, evaluate: Evaluate | None = None
) -> VerifyReport:
    """Extract, check checksums, re-evaluate final_model and compare with the bundled score.

    `evaluate` defaults to `posttrainbench.evaluate.run.evaluate_model` (same signature)."""
    if not bundle.is_file():
        raise ConfigError(f"{bundle} is not a file", "pass the run.tar.zst written by ptb bundle")
    work = work_dir or Path(tempfile.mkdtemp(prefix="ptb-verify-"))
    root = work / "run"
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} is not empty", "verify into a fresh --work-dir")
    root.mkdir(parents=True, exist_ok=True)

    def corrupt(problem: str) -> VerifyReport:
        return VerifyReport(
            bundle=str(bundle),
            checksums_ok=False,
            verdict="corrupt",
            problems=[problem],
            work_dir=str(root),
        )

    try:
        extract(bundle, root)
    except UnsafeBundle as exc:
        return corrupt(f"refused: {exc}")
    except (tarfile.TarError, zstandard.ZstdError, OSError, EOFError) as exc:
        return corrupt(f"not a readable run.tar.zst: {type(exc).__name__}: {exc}")
    try:
        manifest = BundleManifest.model_validate_json(
            (root / MANIFEST_NAME).read_bytes(), context=STORED
        )
    except (OSError, ValidationError) as exc:
        return corrupt(f"{MANIFEST_NAME} missing or invalid: {str(exc).splitlines()[0]}")
    report = VerifyReport(
        bundle=str(bundle),
        run_id=manifest.run_id,
        checksums_ok=True,
        files_checked=len(manifest.files),
        bundled_score=manifest.score,
        verdict="verified",
        work_dir=str(root),
    )
    problems = _check(root, manifest)
    try:
        record = load_run(root)
    except ResultsDirError as exc:
        problems.append(exc.message)
    if problems:
        report.checksums_ok, report.verdict, report.problems = False, "corrupt", problems
        return report
    recorded = record.metrics.score if record.metrics else None
    if record.spec.run_id != manifest.run_id or recorded != manifest.score:
        report.verdict = "mismatch"
        report.problems.append("run.json's run id or score differs from the manifest's")
        return report
    if record.metrics is None:
        report.problems.append("no evaluated score bundled (a fallback run): nothing to re-score")
        return report
    if evaluate is None:
        from posttrainbench.evaluate.run import evaluate_model

        evaluate = evaluate_model
    try:
        again = _reevaluate(root, record, evaluate, work / "reeval")
    except (EvaluationError, PtbError) as exc:
        report.verdict = "mismatch"
        report.problems.append(f"re-evaluation failed: {exc.message}")
        return report
    report.reevaluated_score = again.score
    if manifest.score is None or not math.isclose(again.score, manifest.score, abs_tol=TOLERANCE):
        report.verdict = "mismatch"
        report.problems.append(
            f"re-evaluated score {again.score!r} differs from the bundled {manifest.score!r}"
        )
    return report
