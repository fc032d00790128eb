"""A static HTML site over a results dir: `index.html` (leaderboard, filters, plots) and one page
per run under `runs/`. Self-contained pages, relative links only: it works from `file://` and
from any static host.

The index carries the leaderboard's cells as JSON; a small inline script recomputes the
per-benchmark scores and averages for the chosen base model and benchmark, the same way the
leaderboard does (mean over seeds of the mean over base models of the cells present).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from posttrainbench.errors import ResultsDirError
from posttrainbench.records import Leaderboard, LeaderboardRow, LeaderboardSection, RunRecord
from posttrainbench.report import build_leaderboard, plots
from posttrainbench.report.run_page import (
    CSS,
    document,
    esc,
    note,
    render_run_page,
    unisolated_mark,
)
from posttrainbench.results.store import scan_all

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

INDEX_CSS = (
    CSS
    + """
.board td.num,.board th.num{text-align:right}.fb{color:#c62828;font-size:.85em}
.filters{background:#fff;border:1px solid #ddd;padding:.5em 1em;position:sticky;top:0}
.filters label{margin-right:1.5em}.plots{display:flex;flex-wrap:wrap;gap:1em}
.plots figure{margin:0;background:#fff;border:1px solid #eee;padding:.3em}
tr.fallback td{background:#fff4f4}.muted{color:#999}
"""
)

INDEX_JS = """
const DATA = JSON.parse(document.getElementById('ptb-data').textContent);
const fmt = v => v === null ? '—' : v.toFixed(1);
const mean = xs => xs.reduce((a, b) => a + b, 0) / xs.length;
function benchScore(cells) {
  const bySeed = {};
  for (const c of cells) {
    ((bySeed[c.seed] ??= {})[c.base_model] ??= []).push(c.score);
  }
  const seeds = Object.values(bySeed).map(m => mean(Object.values(m).map(mean)));
  return seeds.length ? mean(seeds) : null;
}
function applyFilters() {
  const model = document.getElementById('f-model').value;
  const bench = document.getElementById('f-bench').value;
  const filtered = model !== '' || bench !== '';
  DATA.sections.forEach((sec, si) => {
    const table = document.getElementById('board-' + si);
    table.querySelectorAll('[data-benchmark]').forEach(el => {
      el.hidden = bench !== '' && el.dataset.benchmark !== bench;
    });
    let shownRows = 0;
    sec.rows.forEach((row, ri) => {
      const tr = document.getElementById(`row-${si}-${ri}`);
      const cells = row.cells.filter(c => (model === '' || c.base_model === model)
                                       && (bench === '' || c.benchmark === bench));
      tr.hidden = cells.length === 0;
      if (!tr.hidden) shownRows++;
      let wsum = 0, total = 0;
      for (const b of sec.benchmarks) {
        const td = tr.querySelector(`td[data-benchmark="${CSS.escape(b)}"]`);
        const mine = cells.filter(c => c.benchmark === b);
        const s = mine.length ? benchScore(mine) : null;
        const fb = mine.filter(c => c.source !== 'evaluated').length;
        td.querySelector('.v').textContent = fmt(s);
        td.querySelector('.fb').textContent = fb ? ` †${fb}` : '';
        if (s !== null && !td.hidden) { wsum += sec.weights[b]; total += sec.weights[b] * s; }
      }
      const avg = tr.querySelector('td.avg');
      avg.textContent = filtered ? (wsum ? fmt(total / wsum) + ' (filtered)' : '—')
                                 : avg.dataset.full;
    });
    table.closest('section').hidden = shownRows === 0;
  });
  document.querySelectorAll('#runs tr[data-model]').forEach(tr => {
    tr.hidden = (model !== '' && tr.dataset.model !== model)
             || (bench !== '' && tr.dataset.benchmark !== bench);
  });
}
document.getElementById('f-model').addEventListener('change', applyFilters);
document.getElementById('f-bench').addEventListener('change', applyFilters);
"""


@dataclass(frozen=True)
class RunEntry:
    """A readable run of the results dir and the name of its page."""

    key: str
    run_dir: Path
    record: RunRecord


def page_key(sweep: str, run_id: str) -> str:
    """`<sweep>__<run_id>`, reduced to characters safe in a file name and a URL."""
    return _UNSAFE.sub("_", f"{sweep}__{run_id}")


def scan_entries(results: Path) -> dict[str, RunEntry]:
    """Every readable run below `results`, by page key (the first one wins on a clash)."""
    entries: dict[str, RunEntry] = {}
    for path, loaded in scan_all(results):
        if isinstance(loaded, RunRecord):
            key = page_key(loaded.spec.sweep, loaded.spec.run_id)
            entries.setdefault(key, RunEntry(key, path, loaded))
    return entries


def _json_for_script(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _hrefs(entries: dict[str, RunEntry]) -> dict[str, str]:
    """run_id → relative link of its page."""
    hrefs: dict[str, str] = {}
    for key, entry in entries.items():
        hrefs.setdefault(entry.record.spec.run_id, f"runs/{key}.html")
    return hrefs


def _data(board: Leaderboard, hrefs: dict[str, str]) -> dict[str, Any]:
    return {
        "sections": [
            {
                "weights": s.weights,
                "benchmarks": s.benchmarks,
                "base_models": s.base_models,
                "rows": [
                    {
                        "label": r.label,
                        "sandbox": r.config.sandbox,
                        "cells": [
                            {
                                "seed": c.seed,
                                "benchmark": c.benchmark,
                                "base_model": c.base_model,
                                "score": c.score,
                                "source": c.source,
                                "href": hrefs.get(c.run_id),
                            }
                            for c in r.cells
                        ],
                    }
                    for r in s.rows
                ],
            }
            for s in board.sections
        ]
    }


def _options(select_id: str, label: str, values: Iterable[str]) -> str:
    opts = "".join(f"<option value='{esc(v)}'>{esc(v)}</option>" for v in values)
    return (
        f"<label>{esc(label)} <select id='{select_id}'>"
        f"<option value=''>all</option>{opts}</select></label>"
    )


def _filters(board: Leaderboard) -> str:
    models = sorted({m for s in board.sections for m in s.base_models})
    benches = sorted({b for s in board.sections for b in s.benchmarks})
    return (
        "<div class='filters'>"
        + _options("f-model", "base model", models)
        + _options("f-bench", "benchmark", benches)
        + "<span class='muted'>† runs that took the base model's score</span></div>"
    )


def _average(row: LeaderboardRow) -> str:
    if row.average is None:
        return "— (no complete seed)"
    return f"{row.average:.1f}" + (f" ± {row.std:.1f}" if row.std is not None else "")


def _unjudged_mark(n: int, of: int) -> str:
    """A mark after a row some of whose runs no LLM judge read; "" otherwise."""
    if not n:
        return ""
    why = f"{n} of {of} runs were not read by an LLM judge (ptb report --official leaves them out)"
    return f" <span class='unjudged' title='{esc(why)}'>unjudged</span>"


def _row(si: int, ri: int, row: LeaderboardRow, benches: list[str]) -> str:
    cells = []
    for b in benches:
        score = row.benchmarks.get(b)
        value = f"{score.score:.1f}" if score else "—"
        fb = f" †{score.fallbacks}" if score and score.fallbacks else ""
        cells.append(
            f"<td class='num score' data-benchmark='{esc(b)}'><span class='v'>{esc(value)}</span>"
            f"<span class='fb'>{esc(fb)}</span></td>"
        )
    average = _average(row)
    return (
        f"<tr id='row-{si}-{ri}'><td>{ri + 1}</td><td title='{esc(row.config.detail())}'>"
        f"{esc(row.label)}{unisolated_mark(row.config.sandbox)}"
        f"{_unjudged_mark(row.n_unjudged, row.n_runs)}</td>"
        f"<td class='num avg' data-full='{esc(average)}'>{esc(average)}</td>"
        f"<td class='num'>{row.n_runs}</td><td class='num'>{row.n_fallbacks}</td>"
        + "".join(cells)
        + "</tr>"
    )


def _section_table(si: int, section: LeaderboardSection) -> str:
    benches = section.benchmarks
    head = "".join(
        f"<th class='num' data-benchmark='{esc(b)}'>{esc(b)}"
        f"<br><span class='muted'>w {section.weights[b]:.2f}</span></th>"
        for b in benches
    )
    rows = "".join(_row(si, ri, r, benches) for ri, r in enumerate(section.rows))
    title = f"{section.weighting} weighting · base models: {', '.join(section.base_models)}"
    return (
        f"<section class='board-section'><h2>{esc(title)}</h2>"
        f"<table class='board' id='board-{si}'><tr><th>#</th><th>agent</th>"
        f"<th class='num'>average</th><th class='num'>runs</th><th class='num'>†</th>{head}</tr>"
        f"{rows}</table></section>"
    )


def _link(href: str | None, text: str) -> str:
    return f"<a href='{esc(href)}'>{esc(text)}</a>" if href else esc(text)


def _runs_table(board: Leaderboard, hrefs: dict[str, str]) -> str:
    rows = []
    for section in board.sections:
        for row in section.rows:
            for c in row.cells:
                why = c.reason or ""
                rows.append(
                    f"<tr data-model='{esc(c.base_model)}' data-benchmark='{esc(c.benchmark)}'"
                    f"{' class=fallback' if c.source != 'evaluated' else ''}>"
                    f"<td>{esc(row.label)}{unisolated_mark(row.config.sandbox)}</td>"
                    f"<td>{esc(c.base_model)}</td>"
                    f"<td>{esc(c.benchmark)}</td><td>{c.seed}</td>"
                    f"<td class='num'>{c.score:.1f}</td><td>{esc(c.source)}</td>"
                    f"<td>{esc(why)}{' · reviewed: ' + esc(c.reviewed) if c.reviewed else ''}"
                    f"{' · unjudged' if c.unjudged else ''}</td>"
                    f"<td>{_link(hrefs.get(c.run_id), c.run_id)}</td></tr>"
                )
    head = (
        "<tr><th>agent</th><th>base model</th><th>benchmark</th><th>seed</th><th>score</th>"
        "<th>source</th><th>why</th><th>run</th></tr>"
    )
    return f"<table id='runs'>{head}{''.join(rows)}</table>" if rows else note("no scored run")


def _left_out(board: Leaderboard, hrefs: dict[str, str]) -> str:
    parts = []
    left_out = (
        ("failed", board.failed),
        ("in progress", board.in_progress),
        ("other suite", board.other_suite),
    )
    for title, runs in left_out:
        if runs:
            items = "".join(
                f"<li>{_link(hrefs.get(r.run_id), r.run_id)} ({esc(r.label)}, {esc(r.base_model)},"
                f" {esc(r.benchmark)}, seed {r.seed}): {esc(r.stage or '')} — {esc(r.reason)}</li>"
                for r in runs
            )
            parts.append(f"<h3>{esc(title)}</h3><ul>{items}</ul>")
    if board.unreadable:
        items = "".join(f"<li>{esc(u.path)}: {esc(u.reason)}</li>" for u in board.unreadable)
        parts.append(f"<h3>unreadable</h3><ul>{items}</ul>")
    return "".join(parts)


def _figure(svg: str, caption: str, files: str | None) -> str:
    link = f" (<a href='{files}.svg'>svg</a>, <a href='{files}.png'>png</a>)" if files else ""
    return f"<figure>{svg}<figcaption>{esc(caption)}{link}</figcaption></figure>"


def _plots(board: Leaderboard, records: list[RunRecord], plot_files: bool) -> str:
    def files(name: str) -> str | None:
        return f"plots/{name}" if plot_files else None

    figs = [_figure(plots.average_chart(board), "weighted average per agent", files("average"))]
    for si, section in enumerate(board.sections):
        for ri, row in enumerate(section.rows):
            figs.append(
                _figure(
                    plots.heatmap(section, row),
                    f"{row.label}: benchmark × base model ({section.weighting})",
                    files(f"heatmap-{si}-{ri}"),
                )
            )
    figs.append(
        _figure(plots.score_scatter(records, "time"), "score vs agent time", files("score-vs-time"))
    )
    figs.append(
        _figure(plots.score_scatter(records, "cost"), "score vs API cost", files("score-vs-cost"))
    )
    return f"<div class='plots'>{''.join(figs)}</div>"


def render_index(
    results: Path,
    entries: dict[str, RunEntry] | None = None,
    *,
    plot_files: bool = False,
    suite: str | None = None,
) -> str:
    """The leaderboard page over `results` for `suite` (default: the one its runs follow);
    `plot_files`: link the figures under plots/."""
    board = build_leaderboard(results, suite)
    entries = scan_entries(results) if entries is None else entries
    hrefs = _hrefs(entries)
    records = plots.board_suite_records(board, (e.record for e in entries.values()))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    body = [
        f"<h1>PostTrainBench leaderboard · suite {esc(board.suite or '?')}</h1>",
        f"<p class='muted'>{esc(results)} · {len(entries)} runs · built {stamp}"
        f"{' · baselines: ' + esc(board.baselines) if board.baselines else ''}</p>",
        _filters(board),
        "".join(_section_table(si, s) for si, s in enumerate(board.sections))
        or note("no scored run yet"),
        "<section id='plots-section'><h2>plots</h2>",
        _plots(board, records, plot_files),
        "</section><section id='runs-section'><h2>runs</h2>",
        _runs_table(board, hrefs),
        _left_out(board, hrefs),
        "</section>",
        f"<script type='application/json' id='ptb-data'>{_json_for_script(_data(board, hrefs))}"
        "</script>",
    ]
    return document("PostTrainBench leaderboard", "".join(body), css=INDEX_CSS, js=INDEX_JS)


def write_site(results: Path, out_dir: Path, suite: str | None = None) -> Path:
    """Write index.html, runs/<sweep>__<run_id>.html and plots/ under out_dir for `suite`
    (default: the one the runs follow); returns the index."""
    if not results.is_dir():
        raise ResultsDirError(f"{results} is not a directory", "pass the results dir of a sweep")
    board = build_leaderboard(results, suite)  # first: runs of several suites are refused here
    entries = scan_entries(results)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    for key, entry in entries.items():
        page = render_run_page(entry.run_dir, index_href="../index.html")
        (runs_dir / f"{key}.html").write_text(page, encoding="utf-8")
    plots.save_plots(board, results, out_dir / "plots")
    index = out_dir / "index.html"
    page = render_index(results, entries, plot_files=True, suite=board.suite)
    index.write_text(page, encoding="utf-8")
    return index
