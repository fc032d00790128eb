"""`ptb audit`: re-score stored HumanEval answers with the isolated checker.

Reads inspect-ai logs (`*.eval`, or `.json` logs) of a run directory, an evaluation folder or
one file, re-checks every HumanEval sample's stored completion with evaluate/answer_check.py,
and lists the samples the stored score passed that fail now (an early exit, an always-equal
object, patched builtins fooled the old single-process rule)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel

from posttrainbench.errors import ConfigError
from posttrainbench.evaluate.answer_check import check_answer

TASKS = ("humaneval",)


class AuditRow(BaseModel):
    """One re-checked sample."""

    log: str
    sample: str
    stored: str  # the stored score value, e.g. "C"
    passed_before: bool
    passes_now: bool
    reason: str


def log_files(path: Path) -> list[Path]:
    """The inspect logs at `path`: a file, a run directory's eval/, or every log below a folder."""
    if path.is_file():
        return [path]
    if (path / "run.json").is_file() and (path / "eval").is_dir():
        path = path / "eval"  # a run's own evaluation, not the agent's logs in its workspace
    if not path.is_dir():
        raise ConfigError(f"{path} does not exist", "give a run directory or an eval log")
    return sorted(p for p in path.rglob("*") if p.suffix == ".eval" or _is_json_log(p))


def _is_json_log(path: Path) -> bool:
    if path.suffix != ".json" or not path.is_file():
        return False
    with path.open("rb") as f:
        head = f.read(4096)
    return b'"eval"' in head and (b'"samples"' in head or b'"status"' in head)


def audit(path: Path, concurrency: int = 4) -> list[AuditRow]:
    """Re-check every HumanEval sample under `path`."""
    from inspect_ai.log import read_eval_log

    jobs: list[tuple[str, str, str, dict[str, str], str]] = []
    for file in log_files(path):
        try:
            log = read_eval_log(str(file))
        except Exception:  # not an inspect log
            continue
        if log.eval.task.split("/")[-1] not in TASKS:
            continue
        for sample in log.samples or []:
            score = next(iter((sample.scores or {}).values()), None)
            stored = str(score.value) if score is not None else "-"
            meta = {k: str(sample.metadata.get(k, "")) for k in ("prompt", "test", "entry_point")}
            jobs.append((str(file), str(sample.id), stored, meta, sample.output.completion))
    if not jobs:
        raise ConfigError(f"no HumanEval samples in an inspect log under {path}",
                          "give a run directory, an eval/ folder or a .eval file")  # fmt: skip
    return asyncio.run(_recheck(jobs, concurrency))


async def _recheck(
    jobs: list[tuple[str, str, str, dict[str, str], str]], concurrency: int
) -> list[AuditRow]:
    gate = asyncio.Semaphore(concurrency)

    async def one(job: tuple[str, str, str, dict[str, str], str]) -> AuditRow:
        file, sample, stored, meta, completion = job
        async with gate:
            verdict = await check_answer(
                meta["prompt"], completion, meta["test"], meta["entry_point"]
            )
        return AuditRow(
            log=file, sample=sample, stored=stored, passed_before=stored in ("C", "1", "1.0"),
            passes_now=verdict.passed, reason=verdict.reason,
        )  # fmt: skip

    return list(await asyncio.gather(*(one(j) for j in jobs)))
