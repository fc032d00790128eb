"""Turns check results into the run's verdict: any failed check flags the run.

A flagged run keeps its evaluation for the record, but its score falls back to the base model's.
"""

from __future__ import annotations

from posttrainbench.records import CheckResult, Verdict


def decide(checks: list[CheckResult]) -> Verdict:
    reasons = [f"{c.name}: {r}" for c in checks if not c.passed for r in c.reasons]
    return Verdict(
        decision="flagged" if reasons else "clean",
        reasons=reasons,
        checks=[c.name for c in checks],
    )
