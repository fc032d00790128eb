"""Submission bundles: one run as `run.tar.zst`, checkable and re-scorable anywhere.

`make_bundle` packs the run's records (run.json, prompt.md, integrity/, eval/, the agent's
trajectory and transcript, monitor.csv, egress.jsonl) and the collected final_model/, plus
MANIFEST.json (sha256 and size of every file, ptb version, run id, bundled score) — never the
workspace/, frozen/ or agent/home/. `verify_bundle` extracts it streaming, within caps (total,
per file, file count, and a decompression ratio; nothing beyond what MANIFEST.json declares is
ever decompressed), refusing anything that could land outside the work dir (absolute paths, `..`,
links, devices, sparse files); checks every checksum; refuses a flagged run and one evaluated with
other than the canonical options (full test split, the run's suite, the benchmark's max-token
ladder, the base model's template, the verifier's judge endpoint — never the bundle's); and
re-evaluates final_model with the pristine grader on those options: "verified" when the score
matches.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import IO, Any, Literal

import zstandard
from pydantic import Field, ValidationError

from posttrainbench import __version__
from posttrainbench.catalog import BENCHMARKS, MODELS
from posttrainbench.config import Settings, load_settings
from posttrainbench.errors import ConfigError, EvaluationError, PtbError, ResultsDirError
from posttrainbench.records import STORED, EvalMetrics, Record, RunRecord, Versioned, now
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.store import load_run

BUNDLE_NAME = "run.tar.zst"
MANIFEST_NAME = "MANIFEST.json"
TOLERANCE = 1e-6  # evaluation is greedy and seeded: a re-evaluation gives the same score
_CHUNK = 1 << 20

Verdict = Literal["verified", "mismatch", "corrupt", "flagged", "noncanonical"]
CANONICAL_SPLIT = "test"
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
    work_dir: str | None = Field(
        default=None,
        description="Where the bundle was extracted (--work-dir); None: a temporary folder, "
        "removed once verified.",
    )


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

MANIFEST_MAX_BYTES = 16 * 2**20
HEADER_ALLOWANCE = 64 * 2**10  # a member's tar header and pax records, and the reader's look-ahead
RATIO_SLACK = 4 * 2**20  # bytes extracted before the ratio cap applies
_READ_SIZE = 16 * 2**10  # compressed bytes per read: the grain at which the ratio is checked


class BundleCaps(Record):
    """What extraction admits (Settings' bundle_* caps); nothing past them is ever written."""

    max_bytes: int = Field(gt=0, description="All files together.")
    max_member_bytes: int = Field(gt=0, description="One file.")
    max_files: int = Field(gt=0)
    max_ratio: float = Field(gt=0, description="Bytes extracted per compressed byte read.")

    @classmethod
    def from_settings(cls, settings: Settings) -> BundleCaps:
        return cls(
            max_bytes=settings.bundle_max_bytes,
            max_member_bytes=settings.bundle_max_member_bytes,
            max_files=settings.bundle_max_files,
            max_ratio=settings.bundle_max_ratio,
        )


class UnsafeBundle(Exception):
    """A member that could write outside the work dir, is no plain file, or exceeds a cap."""


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or name.startswith(("/", "\\")) or "\\" in name:
        raise UnsafeBundle(f"member {name!r} has an absolute or foreign path")
    if any(part in ("..", "", ".") for part in name.split("/")) or ".." in path.parts:
        raise UnsafeBundle(f"member {name!r} leads outside the bundle")
    return path


class _Meter:
    """The decompressed stream, counted: a read that would pass `limit` bytes, or more than
    `ratio` bytes per compressed byte consumed, raises before the excess is handed on."""

    def __init__(self, decompressed: Any, compressed: Any, limit: int, ratio: float) -> None:
        self._src, self._raw = decompressed, compressed
        self.count, self.limit, self._ratio = 0, limit, ratio

    def read(self, n: int = -1) -> bytes:
        room = self.limit - self.count
        data: bytes = self._src.read(room + 1 if n < 0 else min(n, room + 1))
        self.count += len(data)
        if self.count > self.limit:
            raise UnsafeBundle(
                f"the stream holds more than its manifest declares (over {self.limit} bytes)"
            )
        if self.count > RATIO_SLACK + self._ratio * self._raw.tell():
            raise UnsafeBundle(
                f"expands more than {self._ratio:g}x its compressed size"
                " (a decompression bomb? PTB_BUNDLE_MAX_RATIO)"
            )
        return data


def _admit(manifest: BundleManifest, caps: BundleCaps) -> dict[str, int]:
    """The declared size of every file the manifest lists, once its caps are checked."""
    declared: dict[str, int] = {}
    for entry in manifest.files:
        _safe_name(entry.path)
        if entry.path in declared or entry.path == MANIFEST_NAME:
            raise UnsafeBundle(f"the manifest lists {entry.path!r} twice")
        if entry.size > caps.max_member_bytes:
            raise UnsafeBundle(
                f"{entry.path}: {entry.size} bytes, over the cap of {caps.max_member_bytes} per"
                " file (PTB_BUNDLE_MAX_MEMBER_GB)"
            )
        declared[entry.path] = entry.size
    if len(declared) > caps.max_files:
        raise UnsafeBundle(
            f"{len(declared)} files, over the cap of {caps.max_files} (PTB_BUNDLE_MAX_FILES)"
        )
    if (total := sum(declared.values())) > caps.max_bytes:
        raise UnsafeBundle(f"{total} bytes, over the cap of {caps.max_bytes} (PTB_BUNDLE_MAX_GB)")
    return declared


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def extract(bundle: Path, dest: Path, caps: BundleCaps | None = None) -> BundleManifest:
    """Extract a bundle into dest and return its manifest, streaming: MANIFEST.json first (its
    declared files within `caps`), then only plain files it lists, each of exactly its declared
    size. Raise UnsafeBundle at the first member that is anything else, points outside dest or
    would cross a cap; decompression never runs ahead of what the manifest declared."""
    caps = caps or BundleCaps.from_settings(load_settings())
    root = dest.resolve()
    declared: dict[str, int] | None = None
    manifest: BundleManifest | None = None
    with (
        bundle.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw, read_size=_READ_SIZE) as zr,
    ):
        meter = _Meter(zr, raw, HEADER_ALLOWANCE, caps.max_ratio)
        with tarfile.open(fileobj=meter, mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                rel = _safe_name(member.name)
                if not member.isreg() or member.issparse():
                    raise UnsafeBundle(f"member {member.name!r} is not a plain file")
                if declared is None:
                    if member.name != MANIFEST_NAME or member.size > MANIFEST_MAX_BYTES:
                        raise UnsafeBundle(f"the bundle does not start with its {MANIFEST_NAME}")
                    meter.limit += _padded(member.size) + HEADER_ALLOWANCE
                    data = _member_file(tar, member).read()
                    try:
                        manifest = BundleManifest.model_validate_json(data, context=STORED)
                    except ValidationError as exc:
                        raise UnsafeBundle(
                            f"{MANIFEST_NAME} invalid: {str(exc).splitlines()[0]}"
                        ) from None
                    declared = _admit(manifest, caps)
                    (root / MANIFEST_NAME).write_bytes(data)
                    continue
                size = declared.pop(member.name, None)
                if size is None:
                    raise UnsafeBundle(f"member {member.name!r} is not in the manifest (or twice)")
                if member.size != size:
                    raise UnsafeBundle(
                        f"member {member.name!r} is {member.size} bytes, the manifest says {size}"
                    )
                meter.limit += _padded(size) + HEADER_ALLOWANCE
                target = root.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                if not target.parent.resolve().is_relative_to(root):
                    raise UnsafeBundle(f"member {member.name!r} leads outside the work dir")
                src = _member_file(tar, member)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                with os.fdopen(os.open(target, flags, 0o644), "wb") as fh:
                    shutil.copyfileobj(src, fh, _CHUNK)
    if manifest is None:
        raise UnsafeBundle(f"the bundle has no {MANIFEST_NAME}")
    return manifest


def _member_file(tar: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    src = tar.extractfile(member)
    if src is None:  # not a regular file (checked before, at the header)
        raise UnsafeBundle(f"member {member.name!r} is not a plain file")
    return src


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


class JudgeChoice(Record):
    """The verifier's own judge: its key goes only to this endpoint, never to the bundle's."""

    model: str | None = None
    base_url: str | None = None


def deviations(
    record: RunRecord, m: EvalMetrics, judge: JudgeChoice, model_dir: Path | None = None
) -> list[str]:
    """Every evaluation option the run recorded (`m`: its metrics) differently from the
    canonical one: the full test split, the run's suite (its seeds), the benchmark's max-token
    ladder, the sampling the bundled model's own generation config gives (`model_dir`), the base
    model's template, and the verifier's judge."""
    spec = record.spec
    info = BENCHMARKS.get(spec.benchmark)
    found: list[str] = []

    def differs(option: str, recorded: object, canonical: object) -> None:
        found.append(f"{option}={recorded!r} (canonical: {canonical!r})")

    if m.benchmark != spec.benchmark:
        differs("benchmark", m.benchmark, spec.benchmark)
    if m.benchmark_version not in (None, info.version):
        differs("benchmark_version", m.benchmark_version, info.version)
    if m.split != CANONICAL_SPLIT:
        differs("split", m.split, CANONICAL_SPLIT)
    if m.params.get("limit") is not None:
        differs("limit", m.params["limit"], None)
    ladder = [step.max_tokens for step in info.max_tokens]
    if m.max_tokens not in ladder:
        differs("max_tokens", m.max_tokens, ladder)
    if m.suite is not None and m.suite != spec.suite:
        differs("suite", m.suite, spec.suite)
    if model_dir is not None and m.sampling is not None:
        from posttrainbench.evaluate.generation import model_sampling
        from posttrainbench.evaluate.run import decoding_of

        for key, value in decoding_of(model_sampling(model_dir), m.max_tokens).items():
            if key in m.decoding and m.decoding[key] != value:
                differs(f"decoding.{key}", m.decoding[key], value)
    family = MODELS.get(spec.base_model).template_family
    if m.template_family != family:
        differs("template", m.template_family, family)
    if m.seed != spec.seed:
        differs("seed", m.seed, spec.seed)
    if spec.judge_base_url is not None and spec.judge_base_url != judge.base_url:
        differs("judge_base_url", spec.judge_base_url, judge.base_url or "the verifier's default")
    if judge.model is not None and spec.judge_model not in (None, judge.model):
        differs("judge_model", spec.judge_model, judge.model)
    return found


def flagged(root: Path, record: RunRecord, cache_dir: Path) -> str | None:
    """Why the run's integrity does not let it verify: a flagged verdict (in run.json or
    integrity/verdict.json) not cleared by a review this machine's key signed, or none."""
    from posttrainbench.integrity import policy, review
    from posttrainbench.records import Verdict

    if record.verdict is None:
        return "no integrity verdict bundled"
    kept = record.review
    if kept is not None and not review.verifies(kept, record.spec, cache_dir):
        kept = None  # signed elsewhere: only the verifier's own reviewers clear a verdict
    stored = RunPaths(root).verdict
    try:
        on_disk = Verdict.model_validate_json(stored.read_bytes(), context=STORED)
    except (OSError, ValidationError):
        on_disk = None
    for verdict in (record.verdict, on_disk):
        if verdict is not None and policy.effective(verdict, kept) == "flagged":
            return "integrity flagged it: " + ("; ".join(verdict.reasons) or "flagged")
    if record.outcome is not None and record.outcome.source == "fallback_flagged" and not kept:
        return f"its score fell back: {record.outcome.reason or 'flagged'}"
    return None


def _reevaluate(
    root: Path,
    record: RunRecord,
    metrics: EvalMetrics,
    evaluate: Evaluate,
    out: Path,
    judge: JudgeChoice,
) -> EvalMetrics:
    spec = record.spec
    kwargs: dict[str, Any] = {
        "split": CANONICAL_SPLIT,
        "limit": None,
        "template_family": MODELS.get(spec.base_model).template_family,
        "max_tokens": metrics.max_tokens,  # one of the benchmark's ladder (deviations says)
        "seed": spec.seed,
        "suite": spec.suite,
        "judge_model": judge.model or spec.judge_model,
        "judge_base_url": judge.base_url,
        "backend": spec.eval_backend,
    }
    from posttrainbench.evaluate.run import OWN_TOKENIZER

    if metrics.params.get("tokenizer") not in (None, OWN_TOKENIZER):  # the base's, as scored
        kwargs["tokenizer_dir"] = MODELS.get(spec.base_model).locate(load_settings().models_dir)
    return evaluate(RunPaths(root).final_model, spec.benchmark, out, **kwargs)


def verify_bundle(
    bundle: Path,
    work_dir: Path | None = None,
    *,
    evaluate: Evaluate | None = None,
    judge: JudgeChoice | None = None,
    caps: BundleCaps | None = None,
) -> VerifyReport:
    """Extract within caps, check checksums and integrity, refuse a run evaluated with other
    than the canonical options, re-evaluate final_model canonically with the verifier's judge
    and compare with the bundled score.

    `evaluate` defaults to `posttrainbench.evaluate.run.evaluate_model` (same signature).
    Without `work_dir`, it works in a temporary folder that is removed however it ends."""
    if not bundle.is_file():
        raise ConfigError(f"{bundle} is not a file", "pass the run.tar.zst written by ptb bundle")
    if work_dir is not None:
        return _verify_in(bundle, work_dir, evaluate, judge or JudgeChoice(), caps)
    with tempfile.TemporaryDirectory(prefix="ptb-verify-") as tmp:
        report = _verify_in(bundle, Path(tmp), evaluate, judge or JudgeChoice(), caps)
    return report.model_copy(update={"work_dir": None})


def _verify_in(
    bundle: Path,
    work: Path,
    evaluate: Evaluate | None,
    judge: JudgeChoice,
    caps: BundleCaps | None,
) -> VerifyReport:
    settings = load_settings()
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
        manifest = extract(bundle, root, caps or BundleCaps.from_settings(settings))
    except UnsafeBundle as exc:
        return corrupt(f"refused: {exc}")
    except (tarfile.TarError, zstandard.ZstdError, OSError, EOFError) as exc:
        return corrupt(f"not a readable run.tar.zst: {type(exc).__name__}: {exc}")
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
    metrics = _rescorable(report, root, record, manifest, judge, settings.cache_dir)
    if metrics is None:
        return report
    if evaluate is None:
        from posttrainbench.evaluate.run import evaluate_model

        evaluate = evaluate_model
    try:
        again = _reevaluate(root, record, metrics, evaluate, work / "reeval", judge)
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


def _rescorable(
    report: VerifyReport,
    root: Path,
    record: RunRecord,
    manifest: BundleManifest,
    judge: JudgeChoice,
    cache_dir: Path,
) -> EvalMetrics | None:
    """The bundled metrics to re-score; None where the run cannot be (the report then says
    why): run.json disagrees with the manifest, the run is flagged, it has no evaluated score,
    or it was evaluated with non-canonical options."""
    recorded = record.metrics.score if record.metrics else None
    if record.spec.run_id != manifest.run_id or recorded != manifest.score:
        report.verdict = "mismatch"
        report.problems.append("run.json's run id or score differs from the manifest's")
        return None
    if (why := flagged(root, record, cache_dir)) is not None:
        report.verdict = "flagged"
        report.problems.append(why)
        return None
    if record.metrics is None:
        report.problems.append("no evaluated score bundled (a fallback run): nothing to re-score")
        return None
    if found := deviations(record, record.metrics, judge, RunPaths(root).final_model):
        report.verdict = "noncanonical"
        report.problems.append("evaluated with non-canonical options: " + ", ".join(found))
        return None
    return record.metrics
