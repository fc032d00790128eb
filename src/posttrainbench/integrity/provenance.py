"""Provenance: do final_model's weights derive from the run's base model, and not another?

Compares the weight set collect recorded of final_model (exactly the files the evaluation loads)
with the base, tensor by tensor (`weights.compare_weights`, streamed), and with the alternatives
known here: the base's instruct twin when it is in the local hub cache, and any checkpoint folder
listed in PTB_PROVENANCE_ALTERNATIVES (os.pathsep-separated). The decision is relative to those
alternatives and to chance (`weights.judge`), never an absolute similarity threshold.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from posttrainbench.catalog.models import hf_cache_path
from posttrainbench.errors import ModelUnavailableError
from posttrainbench.integrity.base import Check, CheckContext, result
from posttrainbench.records import CheckResult, Evidence
from posttrainbench.workspace.weight_set import weight_set

ALTERNATIVES_VAR = "PTB_PROVENANCE_ALTERNATIVES"


def alternatives(ctx: CheckContext) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if ctx.model.instruct:
        with contextlib.suppress(ModelUnavailableError):
            found[ctx.model.instruct] = hf_cache_path(ctx.model.instruct)
    for entry in os.environ.get(ALTERNATIVES_VAR, "").split(os.pathsep):
        if entry.strip():
            path = Path(entry).expanduser()
            found[path.name] = path
    return found


class ProvenanceCheck(Check):
    name = "provenance"

    def run(self, ctx: CheckContext) -> CheckResult:
        from posttrainbench.integrity import weights

        collect = ctx.record.collect
        if collect is None or collect.status != "collected":
            return CheckResult(
                name=self.name, status="skipped", reasons=["no final_model was collected"]
            )
        base = ctx.model.locate(ctx.settings.models_dir)
        alts = alternatives(ctx)
        # Exactly the weight set collect recorded, which the evaluation loads; a run collected
        # by an older ptb has the same rule applied to its copy now.
        files = collect.weights or weight_set(ctx.paths.final_model)
        cmp = weights.compare_weights(ctx.paths.final_model, base, alts, final_files=files)
        evidence = []
        for f in weights.judge(cmp):
            tensors: list[str | None] = [*f.tensors[:3]] or [None]
            evidence += [
                Evidence(kind="tensor", tensor=t, summary=f"{f.code}: {f.message}") for t in tensors
            ]
        figures = {
            "mean_cos_base": round(cmp.mean_cos_base, 4),
            "derived_fraction": round(cmp.derived_fraction, 4),
            "tensors": len(cmp.tensors),
            "bytes_read": cmp.bytes_read,
            "seconds": round(cmp.seconds, 3),
        }
        for alt in cmp.alternatives:
            figures[f"projection[{alt.name}]"] = round(alt.projection, 4)
            figures[f"mean_cos[{alt.name}]"] = round(alt.mean_cos, 4)
        reasons = sorted({e.summary for e in evidence})
        if not alts:
            evidence.append(
                Evidence(
                    kind="note",
                    decisive=False,
                    summary="no alternative checkpoint known here (instruct twin not cached)",
                )
            )
        return result(self.name, evidence, reasons=reasons, figures=figures)
