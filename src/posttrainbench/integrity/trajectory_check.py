"""The `trajectory` check: is the trajectory the other checks read the relay's record, and does
the CLI's stdout agree with it?

The trajectory of an agent that calls an LLM is built from the relay's bodies (harness-side, out
of the sandbox's reach). This check fails closed (`error`) when LLM calls were made and that
record is missing or empty, and sets the CLI's stdout against it: a step stdout claims that the
relay never carried, followed by carried ones, is decisive ("stdout claims a step the model never
produced": something in the sandbox wrote into the CLI's stdout). Context, not decisive: a
claim only at stdout's very end (a CLI stopped after printing a tool's output), tool calls
missing from stdout, a stdout log over its cap, a stdout that could not be converted, and bodies
the relay left out over its caps.
"""

from __future__ import annotations

from pydantic import ValidationError

from posttrainbench.agents.trajectory.crosscheck import Claim, compare
from posttrainbench.agents.trajectory.relay_wire import reader_for
from posttrainbench.agents.trajectory.schema import Trajectory
from posttrainbench.integrity.base import Check, CheckContext, result
from posttrainbench.records import CheckResult, Evidence
from posttrainbench.sandbox.relay.calls import LlmCall

MAX_LISTED = 20
EXCERPT = 160


def _llm_calls(ctx: CheckContext) -> int:
    """Forwarded LLM calls (of a format the trajectory is built from) in the relay's call log."""
    if not ctx.paths.llm_calls.is_file():
        return 0
    n = 0
    for line in ctx.run_file(ctx.paths.llm_calls).decode(errors="replace").splitlines():
        try:
            call = LlmCall.model_validate_json(line)
        except ValidationError:
            continue
        path = call.path.split("?", 1)[0] + "?"
        n += call.refused is None and reader_for(call.provider, path) is not None
    return n


def _load(ctx: CheckContext, which: str) -> Trajectory | None:
    path = ctx.paths.trajectory if which == "relay" else ctx.paths.stdout_trajectory
    if not path.is_file():
        return None
    return Trajectory.model_validate_json(ctx.run_file(path))


def _claim(claim: Claim, decisive: bool) -> Evidence:
    where = "stdout claims" if decisive else "stdout ends with"
    return Evidence(
        kind="step",
        step=claim.step,
        decisive=decisive,
        path="agent/trajectory_stdout.json",
        summary=f"{where} {claim.kind} the model never produced nor was sent (relay record)",
        excerpt=claim.text[:EXCERPT],
    )


class TrajectoryCheck(Check):
    name = "trajectory"

    def run(self, ctx: CheckContext) -> CheckResult:
        evidence: list[Evidence] = []
        outcome = ctx.record.agent
        dropped = 0
        for n, attempt in enumerate(outcome.attempts if outcome else []):
            if attempt.stdout is not None and attempt.stdout.dropped_bytes:
                dropped += attempt.stdout.dropped_bytes
                evidence.append(
                    Evidence(
                        kind="note",
                        decisive=False,
                        path="agent/stdout.log",
                        summary=f"launch {n}: stdout hit its cap, {attempt.stdout.dropped_bytes} "
                        "bytes dropped (the trajectory does not come from it)",
                    )
                )
        calls = _llm_calls(ctx)
        figures: dict[str, float] = {"llm_calls": calls, "stdout_dropped_bytes": dropped}
        relay = _load(ctx, "relay")
        extra = (relay.extra or {}) if relay is not None else {}
        if calls and (relay is None or extra.get("source") != "relay" or not relay.steps):
            why = extra.get("relay_error") or "no trajectory was built from its record"
            reason = f"{calls} LLM calls went through the relay, but {why}"
            return result(self.name, evidence, reasons=[reason], figures=figures, status="error")
        if relay is None or extra.get("source") != "relay":
            return result(self.name, evidence, figures=figures)
        for note in list(extra.get("unread") or [])[:MAX_LISTED]:
            evidence.append(
                Evidence(kind="note", decisive=False, summary=f"relay record incomplete: {note}")
            )
        status = str(extra.get("stdout") or "")
        if status.startswith("failed") or (status in ("empty", "absent") and calls):
            evidence.append(
                Evidence(
                    kind="note",
                    decisive=False,
                    path="agent/stdout.log",
                    summary=f"the CLI's stdout gave no trajectory ({status}) though the relay "
                    f"carried {calls} calls",
                )
            )
        stdout = _load(ctx, "stdout")
        if stdout is not None:
            cmp = compare(stdout, relay)
            forged = cmp.forged
            evidence += [_claim(c, True) for c in forged[:MAX_LISTED]]
            tail = [c for c in cmp.uncarried if c not in forged]
            evidence += [_claim(c, False) for c in tail[:MAX_LISTED]]
            if cmp.missing_calls:
                evidence.append(
                    Evidence(
                        kind="note",
                        decisive=False,
                        path="agent/trajectory_stdout.json",
                        summary=f"stdout lacks {cmp.missing_calls} of the {cmp.relay_calls} tool "
                        "calls the relay carried",
                    )
                )
            figures |= {
                "stdout_claims": len(cmp.claims),
                "uncarried": len(cmp.uncarried),
                "forged": len(forged),
                "relay_tool_calls": cmp.relay_calls,
                "missing_tool_calls": cmp.missing_calls,
            }
        reasons = None
        if any(e.decisive for e in evidence):
            n = sum(e.decisive for e in evidence)
            reasons = [f"stdout claims {n} step(s) the model never produced (relay record)"]
        return result(self.name, evidence, reasons=reasons, figures=figures)
