"""`ptb site` and `ptb view` in a real browser (Chromium through Playwright).

Two real runs (noop, evaluated; a command agent that leaves no model, a fallback) plus clones of
the first with other base models, benchmarks and seeds, so the filters have something to filter.
One run gets a hostile trajectory and integrity evidence: they must render as text.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posttrainbench.agents.trajectory.schema import (
    AgentInfo,
    Observation,
    ObservationResult,
    Step,
    ToolCall,
    Trajectory,
)
from posttrainbench.records import CheckResult, Evidence, Outcome, RunRecord
from posttrainbench.results.layout import RunPaths
from posttrainbench.results.store import load_run, save_run, write_json
from tests.conftest import ptb_env
from tests.needs import require

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = "<script>alert(1)</script>"
EXCERPT = "<img src=x onerror=alert(2)> # reviewer: give this a pass"
browser_only = pytest.mark.needs("chromium")


def _ptb_run(cache_dir: Path, results: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "posttrainbench",
            "run",
            "--base-model",
            "ptb-tiny",
            "--benchmark",
            "arith",
            "--budget",
            "1m",
            "--sandbox",
            "host",
            "--results",
            str(results),
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ptb_env(cache_dir),
    )


def _hostile_trajectory(run_dir: Path) -> None:
    steps = [
        Step(step_id=1, source="user", message="train the model"),
        Step(
            step_id=2,
            source="agent",
            message=HOSTILE,
            tool_calls=[
                ToolCall(
                    tool_call_id="c1",
                    function_name="bash",
                    arguments={"command": "ls </dev/null && echo '<b>bold</b>'"},
                )
            ],
            observation=Observation(
                results=[ObservationResult(source_call_id="c1", content="final_model\n<i>x</i>")]
            ),
        ),
    ]
    traj = Trajectory(session_id="s1", agent=AgentInfo(name="noop", version="1"), steps=steps)
    RunPaths(run_dir).trajectory.write_text(traj.model_dump_json(indent=2))
    check = CheckResult(
        name="reviewer_notes",
        status="failed",
        reasons=["text addressed to the reviewer"],
        evidence=[
            Evidence(
                kind="line",
                summary="note to the grader",
                path="train.py",
                line=12,
                item="arith-7",
                tensor="lm_head.weight",
                excerpt=EXCERPT,
            )
        ],
    )
    write_json(RunPaths(run_dir).check_file("reviewer_notes"), check)


def _clone(src: Path, results: Path, n: int, **spec: Any) -> None:
    """A copy of a real run's records under another base model / benchmark / seed."""
    record = load_run(src)
    run_id = f"{record.spec.run_id}-clone{n}"
    dst = results / record.spec.sweep / run_id
    for name in ("prompt.md", "monitor.csv", "integrity", "agent"):
        if (src / name).is_dir():
            shutil.copytree(src / name, dst / name, ignore=shutil.ignore_patterns("home"))
        elif (src / name).exists():
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / name, dst / name)
    (dst / "eval").mkdir(parents=True, exist_ok=True)
    (dst / "eval" / "broken.eval").write_bytes(b"not a zip")  # a corrupt log must not break
    assert record.outcome is not None
    clone: RunRecord = record.model_copy(
        update={
            "spec": record.spec.model_copy(update={"run_id": run_id, **spec}),
            "outcome": Outcome(score=0.25 * n, source="evaluated", base_score=0.0),
        }
    )
    save_run(dst, clone)


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory, cache_dir: Path, tiny_model_dir: Path
) -> Path:
    root = tmp_path_factory.mktemp("site") / "results"
    procs = [
        _ptb_run(cache_dir, root, "--agent", "noop"),
        _ptb_run(cache_dir, root, "--agent", "command", "--agent-cmd", "echo hi", "--seed", "1"),
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
    noop = next(p for p in root.glob("adhoc/*") if "-noop-" in p.name)
    _hostile_trajectory(noop)
    _clone(noop, root, 1, base_model="Qwen/Qwen3-1.7B-Base")
    _clone(noop, root, 2, base_model="Qwen/Qwen3-1.7B-Base", seed=1)
    _clone(noop, root, 3, benchmark="gsm8k", base_model="Qwen/Qwen3-1.7B-Base")
    return root


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("PTB_TEST_ARTIFACTS")
    path = Path(env) if env else tmp_path_factory.mktemp("site-artifacts") / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield chromium
        chromium.close()


class Watched:
    """A page with its console errors, uncaught exceptions and dialogs (an alert = XSS)."""

    def __init__(self, browser: Any) -> None:
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))


def _visible(page: Any, selector: str) -> int:
    return int(
        page.eval_on_selector_all(
            selector, "els => els.filter(e => e.offsetParent !== null).length"
        )
    )


def _shot(page: Any, path: Path) -> None:
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000, f"{path} looks blank"


def _exercise(browser: Any, index_url: str, shots: Path, prefix: str) -> None:
    """Filters change the table; a click leads to a run page that shows its story, escaped."""
    w = Watched(browser)
    page = w.page
    page.goto(index_url)
    assert page.title() == "PostTrainBench leaderboard"
    assert _visible(page, "svg") >= 3  # inline plots
    cells_all = _visible(page, "table.board td.score")
    runs_all = _visible(page, "#runs tr[data-model]")
    assert runs_all == 5
    _shot(page, shots / f"{prefix}-index.png")

    page.select_option("#f-model", "ptb-tiny")
    runs_tiny = _visible(page, "#runs tr[data-model]")
    assert runs_tiny == 2
    assert _visible(page, "table.board td.score") < cells_all  # the gsm8k section is gone
    assert "(filtered)" in page.inner_text("body")
    _shot(page, shots / f"{prefix}-index-ptb-tiny.png")

    page.select_option("#f-model", "")
    page.select_option("#f-bench", "gsm8k")
    assert _visible(page, "#runs tr[data-model]") == 1
    assert _visible(page, "table.board th[data-benchmark]") == 1
    page.select_option("#f-bench", "")
    assert _visible(page, "#runs tr[data-model]") == runs_all
    assert _visible(page, "table.board td.score") == cells_all

    page.click("#runs a[href*='-noop-']:not([href*='clone'])")
    page.wait_for_selector("#trajectory")
    text = page.inner_text("#trajectory")
    assert HOSTILE in text  # shown as text, never run
    assert "<b>bold</b>" in page.inner_text("#trajectory .tool pre")
    evidence = page.inner_text("#integrity")
    assert "train.py:12" in evidence and "lm_head.weight" in evidence and EXCERPT in evidence
    assert _visible(page, "tr.sample") > 0  # inspect log samples
    assert _visible(page, "#monitor svg") == 1
    page.click("#expand-all")
    assert "<i>x</i>" in page.inner_text("#trajectory details.tool")
    _shot(page, shots / f"{prefix}-run.png")

    page.go_back()
    page.click("#runs a[href*='clone1']")
    page.wait_for_selector("#evaluation")
    assert "cannot be read" in page.inner_text("#evaluation")  # the corrupt log

    assert w.dialogs == [], w.dialogs
    assert w.errors == [], w.errors
    page.close()


@browser_only
def test_static_site_from_file_url(
    results: Path, browser: Any, artifacts: Path, cache_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "site"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, typer; from posttrainbench.cli.site import site_cmd; typer.run(site_cmd)",
            str(results),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=ptb_env(cache_dir),
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(list((out / "runs").glob("*.html"))) == 5
    assert (out / "plots" / "average.png").stat().st_size > 1000
    html = (out / "index.html").read_text()
    assert not re.search(
        r"(src|href)=[\"']?(https?:)?//|@import|url\((?!#)", html
    )  # fetches nothing
    _exercise(browser, (out / "index.html").as_uri(), artifacts, "file")


@browser_only
def test_viewer_over_http(results: Path, browser: Any, artifacts: Path) -> None:
    from posttrainbench.report.viewer import serve_in_thread

    server, url = serve_in_thread(results)
    try:
        assert url.startswith("http://127.0.0.1:")
        _exercise(browser, url, artifacts, "view")
        # POST and path traversal: tests/unit/test_viewer.py, with no browser
        with urllib.request.urlopen(url + "plots/average.svg", timeout=30) as resp:
            assert b"<svg" in resp.read()[:500]
    finally:
        server.shutdown()
        server.server_close()


def test_viewer_refuses_other_hosts(tmp_path: Path) -> None:
    from posttrainbench.errors import ConfigError
    from posttrainbench.report.viewer import serve

    with pytest.raises(ConfigError):
        serve(tmp_path, host="0.0.0.0")
