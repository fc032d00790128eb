"""One run as a self-contained HTML page: header, stages, prompt, trajectory, integrity evidence,
resource monitor, evaluation samples.

Everything read from the run directory is hostile (the agent wrote much of it) and goes through
`html.escape`; the page has inline CSS and JS only and fetches nothing. A file that is missing or
unreadable leaves its section with a note, never breaks the page.
"""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from posttrainbench.agents.trajectory.schema import Step, Trajectory
from posttrainbench.records import STAGES, STORED, CheckResult, Evidence, RunRecord
from posttrainbench.report import plots
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.store import load_run
from posttrainbench.sandbox import isolates

MAX_STEPS = 2000
MAX_TEXT = 20_000
MAX_SAMPLES = 50
NOT_CHECKS = {"verdict", "review", "evaluator_manifest"}

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;
color:#222;background:#fafafa}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#eee}
pre{white-space:pre-wrap;word-break:break-word;background:#fff;border:1px solid #e2e2e2;
padding:.5em;margin:.3em 0;max-height:40em;overflow:auto;font-size:12.5px}
.kv td:first-child{font-weight:600;white-space:nowrap}
.bar{background:#3b6ea5;height:.9em;display:inline-block;min-width:1px}
.step{border-left:4px solid #bbb;padding:.2em .8em;margin:.6em 0;background:#fff}
.step.agent{border-color:#3b6ea5}.step.user{border-color:#5a9e4b}.step.system{border-color:#999}
.who{font-weight:600;font-size:.9em;color:#555}.tool{margin:.3em 0 .3em 1em}
.passed{color:#2e7d32}.failed,.error,.flagged{color:#c62828;font-weight:600}
.skipped{color:#888}.clean{color:#2e7d32;font-weight:600}
.fallback{color:#c62828}.note{color:#777;font-style:italic}
svg{max-width:100%;height:auto}nav a{margin-right:1em}
.unisolated{color:#fff;background:#c62828;padding:0 .4em;font-weight:600;border-radius:3px}
.unjudged{color:#fff;background:#ef6c00;padding:0 .4em;font-weight:600;border-radius:3px}
"""

JS = """
document.getElementById('expand-all')?.addEventListener('click', () => {
  const open = !document.querySelector('#trajectory details[open]');
  document.querySelectorAll('#trajectory details').forEach(d => { d.open = open; });
});
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _clip(text: str | None, limit: int = MAX_TEXT) -> str:
    text = text or ""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n… ({len(text) - limit:,} more characters not shown)"


def pre(text: str | None, limit: int = MAX_TEXT) -> str:
    return f"<pre>{esc(_clip(text, limit))}</pre>"


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def kv_table(rows: Iterable[tuple[str, object]]) -> str:
    body = "".join(
        f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows if v not in (None, "")
    )
    return f'<table class="kv">{body}</table>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}</section>'


def document(title: str, body: str, css: str = CSS, js: str = "") -> str:
    """A complete page; `body` must already be escaped. The data: icon stops a favicon fetch."""
    script = f"<script>{js}</script>" if js else ""
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        "<link rel='icon' href='data:,'>"
        f"<title>{esc(title)}</title><style>{css}</style></head>"
        f"<body>{body}{script}</body></html>"
    )


NO_ISOLATION = "the agent could read and write whatever the harness could (keys, records)"


def unisolated_mark(sandbox: str) -> str:
    """A red mark after a run or row whose sandbox does not isolate the agent; "" otherwise."""
    if isolates(sandbox) is not False:
        return ""
    why = f"sandbox {sandbox}: {NO_ISOLATION}"
    return f" <span class='unisolated' title='{esc(why)}'>unisolated</span>"


def _isolation(sandbox: str) -> str:
    known = isolates(sandbox)
    if known is None:
        return f"unknown: sandbox {sandbox} is not a backend here"
    return "yes" if known else f"NONE: sandbox {sandbox}, {NO_ISOLATION}"


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _header(record: RunRecord) -> str:
    spec, out = record.spec, record.outcome
    score = f"{100 * out.score:.1f}% ({out.source})" if out else "— (no score yet)"
    review = None
    if record.review is not None:
        r = record.review
        review = f"{r.decision} by {r.who} at {r.at:%Y-%m-%d %H:%M}: {r.why}"
    rows: list[tuple[str, object]] = [
        ("agent", spec.agent_config.label()),
        ("configuration", spec.agent_config.detail()),
        ("agent command", spec.agent_cmd),
        (
            "agent files",
            f"{spec.agent_dir} (sha256 {spec.agent_dir_sha256})" if spec.agent_dir else None,
        ),
        ("isolation", _isolation(spec.sandbox)),
        ("base model", spec.base_model),
        ("benchmark", spec.benchmark),
        ("suite", spec.suite),
        ("seed", spec.seed),
        ("sweep", spec.sweep),
        ("score", score),
        (
            "base model's score",
            f"{100 * out.base_score:.1f}%" if out and out.base_score is not None else None,
        ),
        ("fallback cause", out.reason if out and out.source != "evaluated" else None),
        ("verdict", record.verdict.decision if record.verdict else None),
        ("review", review or (out.reviewed if out else None)),
        ("created", f"{spec.created_at:%Y-%m-%d %H:%M:%S %Z}"),
    ]
    if record.agent is not None:
        a = record.agent
        rows.append(("agent exit", a.exit_reason))
        rows.append(("attempts", len(a.attempts)))
        if a.api_usage is not None:
            u = a.api_usage
            rows.append(
                (
                    "LLM calls",
                    f"{u.calls} calls, {u.input_tokens:,} in, "
                    f"{u.output_tokens:,} out, ${u.cost_usd:.4f}",
                )
            )
    return kv_table(rows)


def _agent_failure(record: RunRecord) -> str:
    """Why the agent's last launch failed, with the tail of its stderr; "" if it did not."""
    attempts = record.agent.attempts if record.agent else []
    failure = attempts[-1].failure if attempts else None
    if failure is None:
        return ""
    body = kv_table([("kind", failure.kind), ("message", failure.message)])
    if failure.stderr_tail:
        body += note(f"the last {len(failure.stderr_tail)} lines of its stderr:")
        body += pre("\n".join(failure.stderr_tail))
    return section("agent-failure", "agent failure", body)


def _stages(record: RunRecord) -> str:
    durations = [record.stages[s].duration_s or 0.0 for s in STAGES if s in record.stages]
    longest = max(durations, default=0.0) or 1.0
    rows = []
    for name in STAGES:
        st = record.stages.get(name)
        if st is None:
            continue
        width = 100 * (st.duration_s or 0.0) / longest
        took = f"{st.duration_s:.1f}s" if st.duration_s is not None else "—"
        error = f"{st.error.type}: {st.error.message}" if st.error else ""
        rows.append(
            f"<tr><td>{esc(name)}</td><td class='{esc(st.state)}'>{esc(st.state)}</td>"
            f"<td>{esc(st.started_at.strftime('%H:%M:%S') if st.started_at else '—')}</td>"
            f"<td>{esc(took)}</td><td style='width:18em'>"
            f"<span class='bar' style='width:{width:.1f}%'></span></td><td>{esc(error)}</td></tr>"
        )
    head = "<tr><th>stage</th><th>state</th><th>started</th><th>took</th><th></th><th>error</th>"
    return f"<table>{head}</tr>{''.join(rows)}</table>"


def _load_trajectory(path: Path) -> Trajectory | str:
    try:
        return Trajectory.model_validate_json(path.read_text(errors="replace"))
    except FileNotFoundError:
        return "no trajectory.json"
    except (OSError, ValidationError, ValueError) as exc:
        return f"trajectory.json cannot be read: {str(exc).splitlines()[0]}"


def _tool_call(name: str, arguments: dict[str, Any]) -> str:
    try:
        args = json.dumps(arguments, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        args = repr(arguments)
    return f"<div class='tool'>🔧 <code>{esc(name)}</code>{pre(args)}</div>"


def _step(step: Step) -> str:
    parts = [
        f"<div class='who'>{esc(step.source)} · step {esc(step.step_id)}"
        f"{' · ' + esc(step.timestamp) if step.timestamp else ''}"
        f"{' · ' + esc(step.model_name) if step.model_name else ''}</div>"
    ]
    if step.reasoning_content:
        parts.append(
            f"<details><summary>reasoning</summary>{pre(step.reasoning_content)}</details>"
        )
    if step.message:
        parts.append(f"<div class='msg'>{pre(step.message)}</div>")
    for call in step.tool_calls or []:
        parts.append(_tool_call(call.function_name, call.arguments))
    for result in step.observation.results if step.observation else []:
        size = len(result.content or "")
        parts.append(
            f"<details class='tool'><summary>output ({size:,} chars)</summary>"
            f"{pre(result.content)}</details>"
        )
    return f"<div class='step {esc(step.source)}'>{''.join(parts)}</div>"


def _trajectory(paths: RunPaths) -> str:
    traj = _load_trajectory(paths.trajectory)
    if isinstance(traj, str):
        transcript = _read_text(paths.transcript)
        return note(traj) + (pre(transcript, 200_000) if transcript else "")
    steps = traj.steps[:MAX_STEPS]
    more = (
        note(f"{len(traj.steps) - MAX_STEPS} more steps not shown")
        if len(traj.steps) > MAX_STEPS
        else ""
    )
    head = (
        f"<p>{esc(traj.agent.name)} {esc(traj.agent.version)} · {len(traj.steps)} steps "
        "<button id='expand-all' type='button'>expand/collapse outputs</button></p>"
    )
    return head + "".join(_step(s) for s in steps) + more


def _evidence_rows(evidence: list[Evidence]) -> str:
    rows = []
    for ev in evidence:
        where = ev.path or ""
        if ev.line is not None:
            where += f":{ev.line}"
        extra = ", ".join(
            f"{k} {v}"
            for k, v in (
                ("item", ev.item),
                ("tensor", ev.tensor),
                ("step", ev.step),
                ("score", ev.score),
            )
            if v is not None
        )
        rows.append(
            f"<tr class='evidence'><td>{esc(ev.kind)}{'' if ev.decisive else ' (context)'}</td>"
            f"<td>{esc(ev.summary)}</td><td><code>{esc(where)}</code></td><td>{esc(extra)}</td>"
            f"<td>{pre(ev.excerpt, 2000) if ev.excerpt else ''}</td></tr>"
        )
    head = "<tr><th>kind</th><th>summary</th><th>file:line</th><th>item / tensor</th><th>excerpt"
    return f"<table>{head}</th></tr>{''.join(rows)}</table>" if rows else ""


def _check(path: Path) -> str:
    try:
        check = CheckResult.model_validate_json(path.read_text(errors="replace"), context=STORED)
    except (OSError, ValidationError, ValueError) as exc:
        return f"<h3>{esc(path.stem)}</h3>" + note(f"unreadable: {str(exc).splitlines()[0]}")
    figures = ", ".join(f"{k}={v:g}" for k, v in check.figures.items())
    reasons = "".join(f"<li>{esc(r)}</li>" for r in check.reasons)
    return (
        f"<div class='check'><h3>{esc(check.name)}: <span class='{esc(check.status)}'>"
        f"{esc(check.status)}</span></h3>"
        + (f"<ul>{reasons}</ul>" if reasons else "")
        + (f"<p class='note'>{esc(figures)}</p>" if figures else "")
        + _evidence_rows(check.evidence)
        + "</div>"
    )


def _integrity(record: RunRecord, paths: RunPaths) -> str:
    parts = []
    if record.verdict is not None:
        v = record.verdict
        reasons = "".join(f"<li>{esc(r)}</li>" for r in v.reasons)
        parts.append(
            f"<p>verdict: <span class='{esc(v.decision)}'>{esc(v.decision)}</span></p>"
            + (f"<ul>{reasons}</ul>" if reasons else "")
        )
    try:
        files = sorted(p for p in paths.integrity_dir.glob("*.json") if p.stem not in NOT_CHECKS)
    except OSError:
        files = []
    parts.extend(_check(p) for p in files)
    return "".join(parts) or note("no integrity checks ran")


def _eval_logs(paths: RunPaths) -> list[Path]:
    root = paths.eval.root
    try:
        return sorted(
            p
            for p in root.iterdir()
            if p.suffix == ".eval" or (p.suffix == ".json" and p.name != "metrics.json")
        )
    except OSError:
        return []


def _content(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # chat messages
        return "\n\n".join(f"[{getattr(m, 'role', '?')}] {getattr(m, 'text', m)}" for m in value)
    return str(value)


def _samples(log_path: Path) -> str:
    try:
        from inspect_ai.log import read_eval_log

        log = read_eval_log(str(log_path))
    except Exception as exc:  # a corrupt or foreign log must not break the page
        return note(
            f"{log_path.name} cannot be read: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        )
    samples = log.samples or []
    rows = []
    for s in samples[:MAX_SAMPLES]:
        scores = ", ".join(f"{k}: {v.value}" for k, v in (s.scores or {}).items())
        output = s.output.completion if s.output is not None else ""
        rows.append(
            f"<tr class='sample'><td>{esc(s.id)}</td><td>{pre(_content(s.input), 4000)}</td>"
            f"<td>{pre(output, 4000)}</td><td>{pre(_content(s.target), 1000)}</td>"
            f"<td>{esc(scores)}</td></tr>"
        )
    head = "<tr><th>id</th><th>input</th><th>output</th><th>target</th><th>score</th></tr>"
    shown = f"first {min(len(samples), MAX_SAMPLES)} of {len(samples)} samples"
    caption = f"<p>{esc(log_path.name)}: {esc(log.status)}, {esc(shown)}</p>"
    return f"{caption}<table>{head}{''.join(rows)}</table>"


def _evaluation(record: RunRecord, paths: RunPaths, inspect_href: str | None) -> str:
    parts = []
    if record.metrics is not None:
        m = record.metrics
        parts.append(
            kv_table(
                [
                    (
                        "metric",
                        f"{m.metric} {100 * m.score:.1f}% over {m.n_samples} samples"
                        + (f" ({m.n_failed} failed)" if m.n_failed else ""),
                    ),
                    ("split", m.split),
                    ("backend", m.backend),
                    ("max tokens", m.max_tokens),
                    ("duration", f"{m.duration_s:.1f}s" if m.duration_s is not None else None),
                ]
            )
        )
    if record.eval_error is not None:
        parts.append(note(f"evaluation failed: {record.eval_error.message}"))
    if inspect_href:
        parts.append(f"<p><a href='{esc(inspect_href)}'>open the log in inspect view</a></p>")
    if shutil.which("inspect"):
        cmd = f"inspect view --log-dir {paths.eval.root}"
        parts.append(f"<p>browse the full log: <code>{esc(cmd)}</code></p>")
    logs = _eval_logs(paths)
    parts.extend(_samples(p) for p in logs[:1])
    if not logs:
        parts.append(note("no inspect log"))
    return "".join(parts)


def _monitor(paths: RunPaths) -> str:
    svg = plots.monitor_chart(paths.monitor_csv) if paths.monitor_csv.exists() else None
    return svg or note("no monitor.csv")


def _nav(index_href: str | None) -> str:
    links = [f"<a href='{esc(index_href)}'>← leaderboard</a>"] if index_href else []
    for anchor in ("stages", "prompt", "trajectory", "integrity", "monitor", "evaluation"):
        links.append(f"<a href='#{anchor}'>{anchor}</a>")
    return f"<nav>{''.join(links)}</nav>"


def render_run_page(
    run_dir: Path, *, index_href: str | None = "../index.html", inspect_href: str | None = None
) -> str:
    """The run at `run_dir` as one HTML document (raises ResultsDirError without a run.json)."""
    paths = RunPaths(run_dir)
    record = load_run(run_dir)
    prompt = _read_text(paths.prompt)
    body = [
        _nav(index_href),
        f"<h1>run {esc(record.spec.run_id)}{unisolated_mark(record.spec.sandbox)}</h1>",
        _header(record),
        _agent_failure(record),
        section("stages", "stages", _stages(record)),
        section("prompt", "prompt", pre(prompt, 100_000) if prompt else note("no prompt.md")),
        section("trajectory", "trajectory", _trajectory(paths)),
        section("integrity", "integrity", _integrity(record, paths)),
        section("monitor", "resource use", _monitor(paths)),
        section("evaluation", "evaluation", _evaluation(record, paths, inspect_href)),
    ]
    return document(f"ptb run {record.spec.run_id}", "".join(body), js=JS)
