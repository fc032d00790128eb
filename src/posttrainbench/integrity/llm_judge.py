"""The LLM judge: reads every step, every text file the agent left and the other checks' evidence.

Runs in the harness on the frozen copy, with any inspect model or OpenAI-compatible endpoint
(`--judge-model`, `--judge-base-url`). Everything agent-derived sits inside a fence whose token
is drawn at random per judging (`judge_prompt`), and is cut into chunks so that each piece is read
whole by some call (`judge_chunks`); every call gets the same instructions and fence. A vote is one
pass over all chunks: a category's verdict is a violation if any chunk says so (else unclear if
any does); justifications and citations are merged. The run's suite sets how many independent
votes are taken and how many must flag (v1.2: 2 of 3); each vote is recorded with its model,
settings and chunk count (`CheckResult.votes`). A `violation` by enough votes fails the check;
`unclear` is kept as context; no judge configured is `skipped` (the run is reported unjudged); a
judge that cannot answer is an `error` (the policy fails it closed).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from posttrainbench.catalog.suites import suite
from posttrainbench.integrity.base import Check, CheckContext
from posttrainbench.integrity.judge_chunks import CHUNK_CHARS, chunks, material
from posttrainbench.integrity.judge_prompt import CATEGORIES, fence, prompt
from posttrainbench.records import CheckResult, Evidence, JudgeVote

SETTINGS: dict[str, Any] = {"max_tokens": 16_000}
__all__ = ["CATEGORIES", "CategoryVerdict", "JudgeCheck", "combine", "parse"]


class CategoryVerdict(BaseModel):
    verdict: Literal["clean", "violation", "unclear"]
    justification: str
    citations: list[str] = []


Verdicts = dict[str, CategoryVerdict]


def parse(reply: str) -> Verdicts | None:
    m = re.search(r"\{.*\}", reply, re.S)
    if not m:
        return None
    try:
        data = json.loads(m.group(0))
        return {c: CategoryVerdict.model_validate(data[c]) for c in CATEGORIES}
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


def combine(parts: list[Verdicts]) -> Verdicts:
    """One vote from the verdicts of its chunks: the worst verdict per category (violation, then
    unclear, then clean), with the justifications and citations of the chunks that gave it."""
    out = {}
    for category in CATEGORIES:
        got = [p[category] for p in parts]
        worst = next(
            v for v in ("violation", "unclear", "clean") if any(g.verdict == v for g in got)
        )
        chosen = [g for g in got if g.verdict == worst]
        out[category] = CategoryVerdict(
            verdict=worst,  # type: ignore[arg-type]
            justification=" | ".join(dict.fromkeys(g.justification for g in chosen)),
            citations=list(dict.fromkeys(c for g in chosen for c in g.citations)),
        )
    return out


def _votes(runs: list[Verdicts], flag_at: int) -> list[Evidence]:
    """One note per category some run did not call clean; decisive where `flag_at` runs agree."""
    evidence = []
    for category in CATEGORIES:
        verdicts = [run[category] for run in runs]
        flagged = [v for v in verdicts if v.verdict == "violation"]
        shown = flagged or [v for v in verdicts if v.verdict != "clean"]
        if not shown:
            continue
        tag = f" ({len(flagged)} of {len(runs)} runs)" if len(runs) > 1 else ""
        first = shown[0]
        evidence.append(
            Evidence(
                kind="note",
                decisive=len(flagged) >= flag_at,
                summary=f"{category}: {first.verdict}{tag} — {first.justification}"[:600],
                excerpt="; ".join(first.citations)[:300] or None,
            )
        )
    return evidence


class JudgeCheck(Check):
    name = "judge"
    order = 10

    def run(self, ctx: CheckContext) -> CheckResult:
        if not ctx.judge_model:
            return CheckResult(
                name=self.name,
                status="skipped",
                reasons=["no judge model configured (pass --judge-model to ptb run or ptb judge)"],
            )
        from posttrainbench.evaluate.judge import Judge, Tally

        policy = suite(ctx.record.spec.suite).judges
        found = material(ctx)
        pieces = found.pieces()
        token = fence([t for _, p in pieces for t in (p.label, p.text)])
        cut = chunks(pieces, CHUNK_CHARS)
        texts = [prompt(ctx, token, chunk, i + 1, len(cut)) for i, chunk in enumerate(cut)]
        tally = Tally(model=ctx.judge_model)
        runs: list[Verdicts] = []
        votes: list[JudgeVote] = []
        for draw in range(policy.contamination_runs):
            judge = Judge(
                ctx.judge_model,
                base_url=ctx.judge_base_url,
                settings=dict(SETTINGS),
                cache_dir=ctx.settings.cache_dir / "judgments",
                draw=draw,
            )
            parts = []
            for i, text in enumerate(texts, start=1):
                got = asyncio.run(judge.ask(text, parse, tally))
                if got.value is None:
                    raise RuntimeError(
                        f"the judge gave no verdict on part {i} of {len(texts)} after "
                        f"{got.attempts} tries: {got.error}"
                    )
                parts.append(got.value)
            vote = combine(parts)
            runs.append(vote)
            votes.append(
                JudgeVote(
                    draw=draw,
                    model=ctx.judge_model,
                    base_url=ctx.judge_base_url,
                    settings=dict(SETTINGS),
                    chunks=len(texts),
                    verdicts={c: v.verdict for c, v in vote.items()},
                )
            )
        evidence = _votes(runs, policy.contamination_flag_at)
        return CheckResult(
            name=self.name,
            status="failed" if any(e.decisive for e in evidence) else "passed",
            reasons=[e.summary for e in evidence if e.decisive],
            evidence=evidence,
            votes=votes,
            figures={
                "calls": tally.calls,
                "cached": tally.cached,
                "input_tokens": tally.input_tokens,
                "output_tokens": tally.output_tokens,
                "cost_usd": tally.cost_usd or 0.0,
                "votes": len(votes),
                "flag_at": policy.contamination_flag_at,
                "chunks": len(texts),
                "steps_read": len(ctx.steps),
                "files_read": len(found.files) - 1,
                "files_sampled": len(found.sampled),
                "files_not_read": found.not_read,
                "prompt_chars": sum(len(t) for t in texts),
            },
        )
