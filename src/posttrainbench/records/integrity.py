"""Integrity records: one check's result with its evidence, the verdict, a signed review."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from posttrainbench.records.base import Record, Versioned, migration

Decision = Literal["clean", "flagged"]


CheckStatus = Literal["passed", "failed", "error", "skipped"]
EvidenceKind = Literal["file", "line", "test_item", "tensor", "request", "step", "score", "note"]


class Evidence(Record):
    """One observation behind a check's result, precise enough to be looked up."""

    kind: EvidenceKind
    summary: str = Field(description="One line for humans.")
    decisive: bool = Field(default=True, description="False: context only; did not fail it.")
    path: str | None = Field(default=None, description="File, relative to the frozen workspace.")
    line: int | None = Field(default=None, description="1-based line or record in `path`.")
    item: str | None = Field(default=None, description="Benchmark test item id.")
    tensor: str | None = None
    step: int | None = Field(default=None, description="Trajectory step id.")
    score: float | None = None
    excerpt: str | None = Field(default=None, description="A short, redacted excerpt.")


class JudgeVote(Record):
    """One independent run of the LLM judge over all of a run's material (every chunk)."""

    draw: int = Field(description="0, 1, …: independent repeats, cached apart.")
    model: str
    base_url: str | None = None
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="Generation settings sent (temperature, max_tokens, seed); absent: the "
        "provider's default.",
    )
    chunks: int = Field(description="Calls this vote took: the material cut to fit each call.")
    verdicts: dict[str, str] = Field(
        description="Category → clean, violation or unclear, combined over the chunks (a "
        "violation in any chunk counts)."
    )


class CheckResult(Versioned):
    """One integrity check; written to integrity/<name>.json.

    An `error` is not a pass: the policy fails it closed. `skipped` says why it could not apply
    (e.g. no judge configured) and decides nothing."""

    name: str
    status: CheckStatus
    reasons: list[str] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    figures: dict[str, float] = Field(
        default_factory=dict, description="What the check measured (bytes scanned, cosines …)."
    )
    duration_s: float | None = None
    votes: list[JudgeVote] = Field(
        default_factory=list, description="The LLM judge's votes (the judge check only)."
    )

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@migration("CheckResult", 2)
def _check_result_v2(data: dict[str, Any]) -> dict[str, Any]:
    """v2 had `passed` and evidence as lists of file names by category."""
    passed = data.pop("passed", True)
    data.setdefault("status", "passed" if passed else "failed")
    old = data.get("evidence") or {}
    if isinstance(old, dict):
        data["evidence"] = [
            {"kind": "file", "path": path, "summary": f"{what}: {path}"}
            for what, paths in old.items()
            for path in paths
        ]
    return data


class Review(Versioned):
    """integrity/review.json: a person's decision over the verdict, signed; never edits it."""

    decision: Decision
    why: str
    who: str
    at: datetime
    verdict_sha256: str = Field(description="The verdict.json this review read.")
    run_id: str | None = Field(
        default=None, description="The run reviewed; None in reviews signed before it was bound."
    )
    spec_sha256: str | None = Field(
        default=None, description="sha256 of the run's RunSpec (canonical JSON) when signed."
    )
    signature: str = Field(description="HMAC-SHA256 of the fields above, by the reviewer's key.")


class Verdict(Versioned):
    """integrity/verdict.json: the decision over all checks."""

    decision: Decision
    reasons: list[str] = Field(default_factory=list)
    checks: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list, description="Checks that found a fault.")
    errored: list[str] = Field(
        default_factory=list, description="Checks that could not decide: failed closed."
    )
    skipped: list[str] = Field(default_factory=list)
