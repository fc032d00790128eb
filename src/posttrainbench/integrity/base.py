"""The integrity check contract, its registry, and running every check of a run.

A check reads what the run directory holds after collect — the frozen workspace, the collected
final_model, the harness's own logs (trajectory, egress, relay calls) — and returns a
`CheckResult` with typed evidence. It never runs agent code. A check that raises is recorded as
`error` (the policy fails it closed), never as a pass.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from posttrainbench.catalog.benchmarks import BenchmarkInfo
from posttrainbench.catalog.models import BaseModelInfo
from posttrainbench.config import Settings
from posttrainbench.errors import PtbError
from posttrainbench.records import CheckResult, CheckStatus, Evidence, RunRecord
from posttrainbench.registry import Registry
from posttrainbench.results.layout import RunPaths

if TYPE_CHECKING:
    from posttrainbench.integrity.frozen import FrozenManifest


@dataclass
class CheckContext:
    paths: RunPaths
    record: RunRecord
    model: BaseModelInfo
    bench: BenchmarkInfo
    settings: Settings
    judge_model: str | None = None
    judge_base_url: str | None = None
    earlier: list[CheckResult] = field(default_factory=list)

    @property
    def frozen(self) -> Path:
        return self.paths.frozen_workspace

    @property
    def collected(self) -> bool:
        """Whether collect took a final_model (the checks of its weights need one)."""
        collect = self.record.collect
        return collect is not None and collect.status == "collected"

    @cached_property
    def manifest(self) -> FrozenManifest:
        """What the frozen copy holds (read once for every check)."""
        from posttrainbench.integrity.frozen import load_manifest

        return load_manifest(self.frozen)

    @cached_property
    def steps(self) -> list[dict[str, Any]]:
        """The trajectory's steps as stored (read once); empty without a trajectory."""
        if not self.paths.trajectory.is_file():
            return []
        raw = self.run_file(self.paths.trajectory).decode(errors="replace")
        return list(json.loads(raw).get("steps", []))

    def run_file(self, path: Path) -> bytes:
        """A file of the run directory, opened without following links (see frozen.open_inside)."""
        from posttrainbench.integrity.frozen import read_inside

        return read_inside(self.paths.root, path.relative_to(self.paths.root).as_posix())


class Check(ABC):
    name: ClassVar[str]
    order: ClassVar[int] = 0  # the judge runs last: it reads the others' evidence

    @abstractmethod
    def run(self, ctx: CheckContext) -> CheckResult: ...


CHECKS: Registry[type[Check]] = Registry("integrity check")
CHECKS.register("tamper", "posttrainbench.integrity.manifest:TamperCheck")
CHECKS.register("model_files", "posttrainbench.integrity.model_files:ModelFilesCheck")
CHECKS.register("provenance", "posttrainbench.integrity.provenance:ProvenanceCheck")
CHECKS.register("memorisation", "posttrainbench.integrity.memorisation:MemorisationCheck")
CHECKS.register("decontamination", "posttrainbench.integrity.decontamination:DecontaminationCheck")
CHECKS.register("reviewer_notes", "posttrainbench.integrity.model_files:ReviewerNotesCheck")
CHECKS.register("egress", "posttrainbench.integrity.egress_review:EgressCheck")
CHECKS.register("trajectory", "posttrainbench.integrity.trajectory_check:TrajectoryCheck")
CHECKS.register("judge", "posttrainbench.integrity.llm_judge:JudgeCheck")


def skipped(name: str, reason: str) -> CheckResult:
    return CheckResult(name=name, status="skipped", reasons=[reason])


def result(
    name: str,
    evidence: list[Evidence],
    *,
    reasons: list[str] | None = None,
    figures: dict[str, float] | None = None,
    status: CheckStatus | None = None,
) -> CheckResult:
    """Failed when any evidence is decisive; the reasons default to the decisive summaries."""
    decisive = [e.summary for e in evidence if e.decisive]
    return CheckResult(
        name=name,
        status=status or ("failed" if decisive else "passed"),
        reasons=reasons if reasons is not None else decisive,
        evidence=evidence,
        figures=figures or {},
    )


def harness_file(path: str) -> bool:
    """Whether a workspace path was written by the harness (prompt, evaluator), not the agent."""
    from posttrainbench.workspace.builder import HARNESS_PATHS

    return any(path == p or path.startswith(f"{p}/") for p in HARNESS_PATHS)


VENDORED = ("site-packages", "dist-packages", "node_modules", ".git", "__pycache__")


def vendored(path: str) -> bool:
    """Installed packages and VCS data: third-party code, not the agent's own (an `openai` SDK in a
    workspace venv names api.openai.com without the agent calling it)."""
    return any(part in VENDORED for part in path.split("/")[:-1])


def run_checks(
    ctx: CheckContext, on_result: Callable[[CheckResult], None] | None = None
) -> list[CheckResult]:
    checks = sorted((cls() for _, cls in CHECKS), key=lambda c: (c.order, c.name))
    for check in checks:
        start = time.monotonic()
        try:
            outcome = check.run(ctx)
        except Exception as exc:  # a check that cannot decide fails closed, and says why
            message = exc.message if isinstance(exc, PtbError) else f"{type(exc).__name__}: {exc}"
            outcome = CheckResult(name=check.name, status="error", reasons=[message[:500]])
        outcome.duration_s = round(time.monotonic() - start, 3)
        ctx.earlier.append(outcome)
        if on_result:
            on_result(outcome)
    return ctx.earlier
