"""The agent's own contamination check: `python check_data.py FILE` in its workspace.

The agent sends a training file (at most `MAX_FILE_BYTES`) to the scoring service
(`POST /check-data`, the launch's scoring token, the file's name in `x-ptb-file-name`). The
service stores it harness-side and a separate process of the harness's install reads it with
the decontamination check's own readers and index (`scan_one_file`: n-grams, short items,
token ids, archives) — so a malformed file can crash only that process, never the harness. The
reply says which test items the file covers and on which lines, with the coverage, and what
could not be read; never an item's text. Only matches at or over the check's threshold are
reported, so the reply cannot be climbed toward an item the agent does not already hold. Each
check is logged harness-side (`agent/data_checks.jsonl`: name, sha256, size, verdict).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CHECK_PATH = "/check-data"
NAME_HEADER = "x-ptb-file-name"
MAX_FILE_BYTES = 256 << 20
MAX_MATCHES = 1000

DataVerdict = Literal["clean", "contaminated", "unscanned"]


class DataCheckJob(BaseModel):
    """What the checking process gets: the run's benchmark and base model, the stored file."""

    model_config = ConfigDict(extra="forbid")

    benchmark: str
    base_model: str | None = None
    file: str
    name: str


class DataMatch(BaseModel):
    line: int | None = Field(default=None, description="1-based line or record of the file.")
    item: str = Field(description="The test item's id (never its text).")
    coverage: float | None = None


class DataCheckReply(BaseModel):
    name: str
    benchmark: str
    bytes: int
    verdict: DataVerdict
    items_matched: int = 0
    lines_matched: int = 0
    matches: list[DataMatch] = Field(default_factory=list)
    unscanned: list[str] = Field(default_factory=list, description="What could not be read.")


def safe_name(name: str) -> str:
    """The file's base name, reduced to a plain one (its suffix picks the reader)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c if c.isalnum() or c in "._-" else "_" for c in base).lstrip(".")
    return kept[:120] or "data"


def check_job(job: DataCheckJob) -> DataCheckReply:
    """Scan the stored file as the decontamination check would (in the checking process)."""
    from posttrainbench.catalog import BENCHMARKS, MODELS
    from posttrainbench.config import load_settings
    from posttrainbench.integrity.base import CheckContext
    from posttrainbench.integrity.decontamination import scan_one_file
    from posttrainbench.records import RunRecord, RunSpec
    from posttrainbench.results.layout import RunPaths
    from posttrainbench.runner import harness_info

    path = Path(job.file)
    base = job.base_model or "ptb-tiny"
    spec = RunSpec.model_validate(
        {"run_id": "data-check", "agent": "command", "base_model": base}
        | {"benchmark": job.benchmark, "budget_s": 1}
    )
    ctx = CheckContext(
        paths=RunPaths(path.parent),
        record=RunRecord(spec=spec, harness=harness_info()),
        model=MODELS.get(base),
        bench=BENCHMARKS.get(job.benchmark),
        settings=load_settings(),
    )
    evidence, skipped = scan_one_file(ctx, path, job.name)
    best: dict[tuple[int | None, str], float | None] = {}
    for e in evidence:
        if e.item is None:
            continue
        key = (e.line, e.item)
        best[key] = max(best.get(key) or 0.0, e.score or 0.0) if e.score is not None else None
    matches = [
        DataMatch(line=line, item=item, coverage=cov)
        for (line, item), cov in sorted(best.items(), key=lambda kv: (kv[0][0] or 0, kv[0][1]))
    ]
    items = {m.item for m in matches}
    verdict: DataVerdict = "contaminated" if items else ("unscanned" if skipped else "clean")
    return DataCheckReply(
        name=job.name,
        benchmark=job.benchmark,
        bytes=path.stat().st_size,
        verdict=verdict,
        items_matched=len(items),
        lines_matched=len({m.line for m in matches}),
        matches=matches[:MAX_MATCHES],
        unscanned=[f"{s.path}: {s.reason}" for s in skipped][:50],
    )


def main(argv: list[str] | None = None) -> int:
    """The checking process: JOB (a DataCheckJob) in, REPLY (a DataCheckReply) out."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    args = sys.argv[1:] if argv is None else argv
    reply = check_job(DataCheckJob.model_validate_json(Path(args[0]).read_text()))
    fd, tmp = tempfile.mkstemp(dir=Path(args[1]).parent, prefix=".reply.")
    with os.fdopen(fd, "w") as f:
        f.write(reply.model_dump_json())
    os.replace(tmp, args[1])
    return 0


def render(reply: DataCheckReply) -> str:
    """What check_data.py prints: the verdict, then one line per matched line (ids only)."""
    lines = [
        f"{reply.name}: {reply.verdict} ({reply.bytes} bytes; {reply.benchmark} test items "
        f"matched: {reply.items_matched}, on {reply.lines_matched} line(s))"
    ]
    for m in reply.matches:
        where = f"line {m.line}" if m.line is not None else "file"
        cov = f" (coverage {m.coverage:.2f})" if m.coverage is not None else ""
        lines.append(f"  {where}: test item {m.item}{cov}")
    if len(reply.matches) < reply.lines_matched:
        lines.append(f"  … {reply.lines_matched - len(reply.matches)} more line(s)")
    lines += [f"  not scanned: {u}" for u in reply.unscanned]
    if reply.verdict == "contaminated":
        lines.append("Remove these lines before training: the integrity check flags them.")
    return "\n".join(lines)


def _post(body: bytes, name: str) -> bytes:
    """POST the file to the scoring service; its reply's body, or EvaluationError."""
    import httpx

    from posttrainbench.errors import EvaluationError
    from posttrainbench.evaluate.scoring_service import TOKEN_VAR, URL_VAR

    url, token = os.environ.get(URL_VAR), os.environ.get(TOKEN_VAR)
    if not url or not token:
        raise EvaluationError(
            f"no scoring service ({URL_VAR} is not set): the test items stay with the harness",
            "run check_data.py inside a run's sandbox, where the harness checks it",
        )
    headers = {"authorization": f"Bearer {token}", NAME_HEADER: name}
    try:
        with httpx.Client(trust_env=False, timeout=httpx.Timeout(None, connect=30)) as client:
            r = client.post(url.rstrip("/") + CHECK_PATH, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise EvaluationError(f"the scoring service at {url} did not answer: {exc}") from None
    if r.status_code != 200:
        try:
            why = str(r.json().get("error"))
        except ValueError:
            why = r.text[:200]
        raise EvaluationError(f"the data check was refused: {why} (HTTP {r.status_code})")
    return r.content


def client_main(argv: list[str]) -> int:
    """`check_data.py FILE`: send FILE to the scoring service, print its verdict. Exit 0 clean,
    1 contaminated or unscanned, 2 on an error."""
    from posttrainbench.errors import PtbError

    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[0] + "\nusage: python check_data.py FILE", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            print(f"{path} is over {MAX_FILE_BYTES >> 20} MiB: split it", file=sys.stderr)
            return 2
        body = path.read_bytes()
        raw = _post(body, safe_name(path.name))
    except OSError as exc:
        print(f"cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except PtbError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    reply = DataCheckReply.model_validate_json(raw)
    print(render(reply))
    return 0 if reply.verdict == "clean" else 1


if __name__ == "__main__":
    sys.exit(main())
