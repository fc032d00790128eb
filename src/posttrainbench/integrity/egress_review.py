"""Egress and API review: what the agent fetched, and which LLMs it talked to.

Reads the proxy's `egress.jsonl` (hosts; paths of plain HTTP), the relay's `llm_calls.jsonl`,
the agent's actions in `trajectory.json` (its messages and tool-call arguments, not what tools
answered), its captured stdout, and the text files of the frozen workspace. Decisive:
- the benchmark's test set: its hub repository (with a test-split marker nearby when the
  benchmark has public splits, e.g. GSM8K's train), or its data URL;
- an instruct checkpoint of the catalog (the run's twin, or any other);
- the published results and traces of PostTrainBench;
- a request to an LLM API host other than the run's own relay — attempted counts, denied or not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from posttrainbench.catalog import MODELS
from posttrainbench.catalog.benchmarks import BenchmarkInfo, HubSource, UrlSource
from posttrainbench.integrity.base import Check, CheckContext, harness_file, result, vendored
from posttrainbench.integrity.frozen import read_inside
from posttrainbench.records import CheckResult, Evidence, EvidenceKind

LLM_API_HOSTS = (
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "aiplatform.googleapis.com",
    "openrouter.ai",
    "api.together.xyz",
    "api.together.ai",
    "api.groq.com",
    "api.mistral.ai",
    "api.deepseek.com",
    "api.fireworks.ai",
    "api.cohere.com",
    "api.cohere.ai",
    "api.x.ai",
    "api-inference.huggingface.co",
    "router.huggingface.co",
    "api.perplexity.ai",
    "openai.azure.com",
    "bedrock-runtime",
)
PUBLISHED = re.compile(
    r"aisa-group|posttrainbench-website|posttrainbench\.(?:com|org|ai|github\.io)"
    r"|github\.com/[\w.-]+/post-?train-?bench|2603\.08640",
    re.I,
)
TEST_MARKER = re.compile(r"""split\s*=\s*["']test|["']test["']|/test[-_/.]|\btest-0000""")
CODE_SUFFIXES = frozenset({".py", ".sh", ".ipynb", ".txt", ".md", ".yaml", ".yml", ".json", ""})
MAX_TEXT_BYTES = 1 << 20
EXCERPT = 160


@dataclass(frozen=True)
class _Text:
    """One piece of what the agent did or wrote, and where it is."""

    text: str
    path: str | None = None
    step: int | None = None


def _excerpt(text: str, start: int, end: int) -> str:
    lo = max(0, start - 40)
    return " ".join(text[lo : min(len(text), end + EXCERPT - 40)].split())[:EXCERPT]


def _hit(piece: _Text, line: int | None, summary: str, excerpt: str) -> Evidence:
    kind: EvidenceKind = "step" if piece.step is not None else "line"
    return Evidence(
        kind=kind, path=piece.path, step=piece.step, line=line, summary=summary, excerpt=excerpt
    )


def _lines(text: str) -> Iterator[tuple[int, str]]:
    yield from enumerate(text.splitlines(), start=1)


class _Rules:
    """What is forbidden for this run, as patterns over text and hosts."""

    def __init__(self, bench: BenchmarkInfo) -> None:
        self.bench = bench
        self.repos = [s.repo for s in bench.sources if isinstance(s, HubSource)]
        self.urls = [s.url for s in bench.sources if isinstance(s, UrlSource)]
        self.instruct = sorted({m.instruct for _, m in MODELS if m.instruct})

    def scan(self, piece: _Text) -> Iterator[Evidence]:
        for line_no, line in _lines(piece.text):
            for start, end, summary in self._matches(line):
                yield _hit(
                    piece,
                    line_no if piece.path else None,
                    summary=summary,
                    excerpt=_excerpt(line, start, end),
                )

    def _matches(self, line: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, what it is) of every forbidden reference in one line."""
        low = line.lower()
        name = self.bench.display_name
        for repo in self.repos:
            i = low.find(repo.lower())
            if i >= 0 and (not self.bench.public_splits or TEST_MARKER.search(line)):
                yield i, i + len(repo), f"uses the {name} test set ({repo})"
        for url in self.urls:
            file = url.rsplit("/", 1)[-1]
            i = line.find(file)
            if i >= 0:
                yield i, i + len(file), f"fetches the {name} test data ({file})"
        for repo in self.instruct:
            m = re.search(rf"{re.escape(repo)}(?![\w.-])", line, re.I)
            if m:
                yield m.start(), m.end(), f"refers to the instruct checkpoint {repo}"
        m = PUBLISHED.search(line)
        if m:
            yield m.start(), m.end(), "refers to PostTrainBench's published results or code"
        for host in LLM_API_HOSTS:
            i = low.find(host)
            if i >= 0:
                yield i, i + len(host), f"addresses the LLM API {host} (not the run's relay)"


def _egress(path: Path) -> Iterator[Evidence]:
    if not path.is_file():
        return
    for n, raw in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        host = str(event.get("host") or "").lower()
        target = f"{host}{event.get('path') or ''}"
        what = f"{event.get('method') or '?'} {target} ({event.get('decision')})"
        if any(h in host for h in LLM_API_HOSTS):
            yield Evidence(
                kind="request",
                path="egress.jsonl",
                line=n,
                summary=f"requested the LLM API {host} outside the relay: {what}",
            )
        elif PUBLISHED.search(target):
            yield Evidence(
                kind="request",
                path="egress.jsonl",
                line=n,
                summary=f"requested PostTrainBench's published material: {what}",
            )


def _texts(ctx: CheckContext) -> Iterator[_Text]:
    if ctx.paths.trajectory.is_file():
        for step in ctx.steps:
            if step.get("source") != "agent":
                continue
            parts = [step.get("message") or ""]
            parts += [json.dumps(c.get("arguments", {})) for c in step.get("tool_calls") or []]
            yield _Text("\n".join(parts), step=step.get("step_id"))
    elif ctx.paths.agent_stdout.is_file():  # an agent without a trajectory (`command`)
        stdout = ctx.run_file(ctx.paths.agent_stdout).decode(errors="replace")
        yield _Text(stdout, path="agent/stdout.log")
    for f in ctx.manifest.files:
        if f.kind != "copied" or f.size > MAX_TEXT_BYTES or harness_file(f.path):
            continue
        if vendored(f.path):
            continue
        if Path(f.path).suffix.lower() not in CODE_SUFFIXES:
            continue
        yield _Text(read_inside(ctx.frozen, f.path).decode(errors="replace"), path=f.path)


class EgressCheck(Check):
    name = "egress"

    def run(self, ctx: CheckContext) -> CheckResult:
        rules = _Rules(ctx.bench)
        evidence = list(_egress(ctx.paths.egress))
        pieces = 0
        for piece in _texts(ctx):
            pieces += 1
            evidence += rules.scan(piece)
        return result(
            self.name,
            _dedup(evidence),
            figures={"texts_read": pieces, "egress_logged": float(ctx.paths.egress.is_file())},
        )


def _dedup(evidence: list[Evidence], limit: int = 50) -> list[Evidence]:
    seen: set[tuple[str, str | None, int | None, int | None]] = set()
    kept = []
    for e in evidence:
        key = (e.summary, e.path, e.line, e.step)
        if key not in seen:
            seen.add(key)
            kept.append(e)
    return kept[:limit]
