"""Turns check results into the run's verdict, and applies a signed human review over it.

Any failed check flags the run; so does a check that errored (it fails closed: a judge outage is
not a pass). A skipped check decides nothing and is listed. A flagged run keeps its evaluation for
the record, but its score falls back to the base model's.
"""

from __future__ import annotations

from posttrainbench.records import CheckResult, Decision, Review, Verdict


def decide(checks: list[CheckResult]) -> Verdict:
    reasons = [f"{c.name}: {r}" for c in checks if c.status == "failed" for r in c.reasons]
    errored = [c.name for c in checks if c.status == "error"]
    reasons += [
        f"{c.name}: could not decide ({'; '.join(c.reasons) or 'no reason given'}), failed closed"
        for c in checks
        if c.status == "error"
    ]
    return Verdict(
        decision="flagged" if reasons else "clean",
        reasons=reasons,
        checks=[c.name for c in checks],
        failed=[c.name for c in checks if c.status == "failed"],
        errored=errored,
        skipped=[c.name for c in checks if c.status == "skipped"],
    )


def effective(verdict: Verdict | None, review: Review | None) -> Decision | None:
    """The decision scores use: a valid review's, else the verdict's."""
    if review is not None:
        return review.decision
    return verdict.decision if verdict else None


def only_undecided(verdict: Verdict | None) -> bool:
    """Flagged only because checks could not decide (no check found a fault): when the model
    could not even be evaluated, that — not integrity — is the cause of the fallback."""
    return verdict is not None and bool(verdict.errored) and not verdict.failed
