"""Submission bundles: a real noop run on ptb-tiny × arith, bundled, verified, tampered with."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zstandard

from posttrainbench import runner
from posttrainbench.config import load_settings
from posttrainbench.errors import ConfigError
from posttrainbench.records import EvalMetrics, RunSpec, new_run_id
from posttrainbench.results.bundle import (
    BUNDLE_NAME,
    MANIFEST_NAME,
    BundleManifest,
    JudgeChoice,
    extract,
    make_bundle,
    verify_bundle,
)
from posttrainbench.results.layout import RunPaths
from tests.conftest import PtbRunner


@pytest.fixture(scope="module")
def run_dir(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = load_settings(tmp_path_factory.mktemp("bundle-results"))
    spec = RunSpec(
        run_id=new_run_id("noop", "ptb-tiny", "arith"),
        agent="noop",
        base_model="ptb-tiny",
        benchmark="arith",
        budget_s=300,
        sandbox="host",
    )
    run_dir = runner.create_run(spec, settings)
    record = runner.execute(run_dir, settings)
    assert record.outcome and record.outcome.source == "evaluated" and record.metrics
    paths = RunPaths(run_dir)
    (paths.agent_home / "secret.txt").parent.mkdir(parents=True, exist_ok=True)
    (paths.agent_home / "secret.txt").write_text("never bundled")
    return run_dir


@pytest.fixture(scope="module")
def bundle(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BundleManifest]:
    out = tmp_path_factory.mktemp("bundle-out")
    return out / BUNDLE_NAME, make_bundle(run_dir, out)


def _members(path: Path) -> dict[str, bytes]:
    with (
        path.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as zr,
        tarfile.open(fileobj=zr, mode="r|") as tar,
    ):
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def _write(path: Path, members: dict[str, bytes]) -> None:
    with (
        path.open("wb") as raw,
        zstandard.ZstdCompressor().stream_writer(raw) as zw,
        tarfile.open(fileobj=zw, mode="w|") as tar,
    ):
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_bundle_holds_records_and_model_only(
    run_dir: Path, bundle: tuple[Path, BundleManifest]
) -> None:
    path, manifest = bundle
    names = set(_members(path))
    assert MANIFEST_NAME in names and "run.json" in names and "eval/metrics.json" in names
    assert any(n.startswith("final_model/") and n.endswith(".safetensors") for n in names)
    assert any(n.startswith("integrity/") for n in names)
    assert not any(n.startswith(("workspace/", "frozen/", "agent/home/")) for n in names)
    assert {f.path for f in manifest.files} == names - {MANIFEST_NAME}
    assert manifest.score == runner.load(run_dir).metrics.score  # type: ignore[union-attr]


def test_bundle_verifies_on_a_clean_copy(
    bundle: tuple[Path, BundleManifest], tmp_path: Path
) -> None:
    path, manifest = bundle
    elsewhere = tmp_path / "clean" / BUNDLE_NAME
    elsewhere.parent.mkdir()
    shutil.copy(path, elsewhere)
    report = verify_bundle(elsewhere, tmp_path / "work")
    assert report.verdict == "verified", report.problems
    assert report.checksums_ok and report.reevaluated_score == pytest.approx(manifest.score)
    assert report.bundled_score == manifest.score


def test_a_changed_weight_byte_is_corrupt(
    bundle: tuple[Path, BundleManifest], tmp_path: Path
) -> None:
    members = _members(bundle[0])
    weight = next(n for n in members if n.endswith(".safetensors"))
    data = bytearray(members[weight])
    data[-1] ^= 0x01
    members[weight] = bytes(data)
    tampered = tmp_path / BUNDLE_NAME
    _write(tampered, members)
    called = []
    report = verify_bundle(tampered, tmp_path / "work", evaluate=lambda *a, **k: called.append(a))
    assert report.verdict == "corrupt" and not report.checksums_ok and not called
    assert any(weight in p and "sha256" in p for p in report.problems)


def test_a_different_score_is_a_mismatch(
    bundle: tuple[Path, BundleManifest], tmp_path: Path
) -> None:
    path, manifest = bundle
    assert manifest.score is not None

    def evaluate(model_dir: Path, benchmark: str, out: Path, **kw: object) -> EvalMetrics:
        assert benchmark == "arith" and kw["template_family"] == "ptb-tiny"
        assert (model_dir / "config.json").is_file()
        return EvalMetrics(
            benchmark=benchmark,
            split="test",
            score=min(1.0, manifest.score + 0.01),  # type: ignore[operator]
            n_samples=1,
            model_path=str(model_dir),
        )

    report = verify_bundle(path, tmp_path / "work", evaluate=evaluate)
    assert report.verdict == "mismatch" and report.checksums_ok


@pytest.mark.parametrize("name", ["../evil", "/tmp/evil-abs", "a/../../evil"])
def test_a_path_outside_the_work_dir_is_refused(tmp_path: Path, name: str) -> None:
    hostile = tmp_path / BUNDLE_NAME
    _write(hostile, {name: b"pwned", "run.json": b"{}"})
    report = verify_bundle(hostile, tmp_path / "work")
    assert report.verdict == "corrupt" and "refused" in report.problems[0]
    assert not (tmp_path / "evil").exists() and not (tmp_path / "work" / "evil").exists()
    assert not Path("/tmp/evil-abs").exists()


def test_links_are_refused(tmp_path: Path) -> None:
    hostile = tmp_path / BUNDLE_NAME
    with (
        hostile.open("wb") as raw,
        zstandard.ZstdCompressor().stream_writer(raw) as zw,
        tarfile.open(fileobj=zw, mode="w|") as tar,
    ):
        link = tarfile.TarInfo("final_model")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        tar.addfile(link)
    with pytest.raises(Exception, match="not a plain file"):
        extract(hostile, tmp_path)
    assert not (tmp_path / "final_model").exists()


def test_a_bundle_that_is_not_one(tmp_path: Path) -> None:
    junk = tmp_path / BUNDLE_NAME
    junk.write_bytes(b"not zstd at all")
    assert verify_bundle(junk, tmp_path / "work").verdict == "corrupt"
    with pytest.raises(ConfigError):
        verify_bundle(tmp_path / "missing.tar.zst")


# --- verification on the verifier's terms ---------------------------------------------------------


def _rebundle(source: Path, out: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """The bundle with run.json edited and its manifest entry re-signed to match: what a
    bundle's author can always do (a manifest proves integrity in transit, not honesty)."""
    members = _members(source)
    record = json.loads(members["run.json"])
    edit(record)
    members["run.json"] = json.dumps(record).encode()
    manifest = json.loads(members[MANIFEST_NAME])
    for entry in manifest["files"]:
        if entry["path"] == "run.json":
            entry["size"] = len(members["run.json"])
            entry["sha256"] = hashlib.sha256(members["run.json"]).hexdigest()
    members[MANIFEST_NAME] = json.dumps(manifest).encode()
    out.mkdir(parents=True, exist_ok=True)
    _write(out / BUNDLE_NAME, {MANIFEST_NAME: members.pop(MANIFEST_NAME), **members})
    return out / BUNDLE_NAME


def _set(*keys: str, value: object) -> Callable[[dict[str, Any]], None]:
    def edit(record: dict[str, Any]) -> None:
        for key in keys[:-1]:
            record = record[key]
        record[keys[-1]] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "option"),
    [
        (
            _set("spec", "judge_base_url", value="http://judge.attacker.example/v1"),
            "judge_base_url",
        ),
        (_set("metrics", "params", "limit", value=1), "limit=1"),
        (_set("metrics", "split", value="dev"), "split='dev'"),
        (_set("metrics", "max_tokens", value=17), "max_tokens=17"),
        (_set("metrics", "decoding", "temperature", value=0.7), "decoding.temperature=0.7"),
        (_set("metrics", "template_family", value="chatml"), "template='chatml'"),
    ],
)
def test_ptb_verify_refuses_non_canonical_options(
    bundle: tuple[Path, BundleManifest],
    tmp_path: Path,
    ptb: PtbRunner,
    edit: Callable[[dict[str, Any]], None],
    option: str,
) -> None:
    edited = _rebundle(bundle[0], tmp_path / "edited", edit)
    result = ptb("verify", str(edited), "--work-dir", str(tmp_path / "work"))
    assert result.returncode == 1, result.stderr
    verdict = next(line for line in result.stderr.splitlines() if line.startswith("verdict:"))
    assert "noncanonical" in verdict and option in verdict, result.stderr
    assert not (tmp_path / "work" / "reeval").exists()  # refused before the judge is called


def test_ptb_verify_names_every_deviation(
    bundle: tuple[Path, BundleManifest], tmp_path: Path, ptb: PtbRunner
) -> None:
    def edit(record: dict[str, Any]) -> None:
        record["metrics"]["params"]["limit"] = 1
        record["metrics"]["split"] = "dev"

    edited = _rebundle(bundle[0], tmp_path / "edited", edit)
    result = ptb("verify", str(edited), "--work-dir", str(tmp_path / "work"))
    assert result.returncode == 1 and "limit=1" in result.stderr and "split='dev'" in result.stderr


def test_the_judge_url_is_the_verifiers(
    bundle: tuple[Path, BundleManifest], tmp_path: Path
) -> None:
    """Re-evaluation runs canonically: full test split, the verifier's judge endpoint (the
    bundle's is only accepted when it is the verifier's own)."""
    url = "http://judge.bundle.example/v1"
    edited = _rebundle(bundle[0], tmp_path / "edited", _set("spec", "judge_base_url", value=url))
    seen: dict[str, object] = {}

    def evaluate(model_dir: Path, benchmark: str, out: Path, **kw: object) -> EvalMetrics:
        seen.update(kw)
        return EvalMetrics(
            benchmark=benchmark, split="test", score=bundle[1].score or 0.0, n_samples=1,
            model_path=str(model_dir),
        )  # fmt: skip

    mine = JudgeChoice(base_url="http://judge.verifier.example/v1")
    refused = verify_bundle(edited, tmp_path / "w1", evaluate=evaluate, judge=mine)
    assert refused.verdict == "noncanonical" and "judge_base_url" in refused.problems[0]
    assert not seen
    same = verify_bundle(
        edited, tmp_path / "w2", evaluate=evaluate, judge=JudgeChoice(base_url=url)
    )
    assert same.verdict == "verified", same.problems
    assert seen["judge_base_url"] == url and seen["limit"] is None and seen["split"] == "test"
    plain = verify_bundle(bundle[0], tmp_path / "w3", evaluate=evaluate, judge=mine)
    assert plain.verdict == "verified" and seen["judge_base_url"] == mine.base_url


def _flag(record: dict[str, Any]) -> None:
    record["verdict"].update(
        decision="flagged", reasons=["judge: trained on the test set"], failed=["judge"]
    )


def _flag_and_forge_a_review(record: dict[str, Any]) -> None:
    _flag(record)
    record["review"] = {
        "run_id": record["spec"]["run_id"],
        "decision": "clean",
        "why": "looks fine to me",
        "who": "the author",
        "at": datetime.now(UTC).isoformat(),
        "verdict_sha256": "0" * 64,
        "spec_sha256": "0" * 64,
        "signature": "0" * 64,
    }
    if "schema_version" in record["verdict"]:
        record["review"]["schema_version"] = record["verdict"]["schema_version"]


@pytest.mark.parametrize("edit", [_flag, _flag_and_forge_a_review])
def test_ptb_verify_refuses_a_flagged_run(
    bundle: tuple[Path, BundleManifest],
    tmp_path: Path,
    ptb: PtbRunner,
    edit: Callable[[dict[str, Any]], None],
) -> None:
    edited = _rebundle(bundle[0], tmp_path / "edited", edit)
    result = ptb("verify", str(edited), "--work-dir", str(tmp_path / "work"))
    assert result.returncode == 1, result.stderr
    assert "verdict: flagged" in result.stderr and "trained on the test set" in result.stderr


def test_ptb_verify_verifies_the_untouched_bundle(
    bundle: tuple[Path, BundleManifest], tmp_path: Path, ptb: PtbRunner
) -> None:
    result = ptb("verify", str(bundle[0]), "--work-dir", str(tmp_path / "work"))
    assert result.returncode == 0 and "verdict: verified" in result.stderr, result.stderr
