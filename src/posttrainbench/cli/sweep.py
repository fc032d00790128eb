"""`ptb sweep run` and `ptb sweep status`: a grid of runs from a sweep file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from posttrainbench.cli.common import ResultsOpt, StageOpt, console, out
from posttrainbench.cli.run_spec import duration
from posttrainbench.config import load_settings
from posttrainbench.records import StageName
from posttrainbench.sandbox import default_sandbox

sweep_app = typer.Typer(help="Run a grid of runs from a sweep file, on this machine or a cluster.")

SWEEP_EPILOG = """Example sweep file (TOML; YAML works too):

  name = "qwen-math"
  base_models = ["Qwen/Qwen3-1.7B-Base"]
  benchmarks = ["gsm8k"]
  seeds = [0, 1, 2]
  budget = "10h"
  [[agents]]
  agent = "claude-code"
  agent_model = "claude-sonnet-4-5"
  [[agents]]
  agent = "command"
  agent_name = "my-agent"
  agent_dir = "my_agent"  # relative to this file; read-only at /agent
  agent_cmd = "python /agent/my_agent.py"
  [executor]
  kind = "local"        # or slurm, ray, htcondor
  slots = 4
  gpus = [0, 1, 2, 3]
  gpus_per_run = 1
"""


@sweep_app.command("run", epilog=SWEEP_EPILOG)
def sweep_run(
    file: Annotated[Path, typer.Argument(metavar="SWEEP_FILE", help="A .toml or .yaml file.")],
    results: ResultsOpt = None,
    retry_delay: Annotated[
        str, typer.Option(metavar="DURATION", help="Pause before retrying failed runs.")
    ] = "30s",
    until: Annotated[
        StageOpt | None,
        typer.Option(
            help="Stop each run after this stage (e.g. collect, to run the agents on GPU nodes "
            "and evaluate later); running the sweep again without it carries on."
        ),
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Also try again, once, the runs that failed for a cause no retry fixes by "
            "itself (a configuration or a refused key): after you fixed it.",
        ),
    ] = False,
) -> None:
    """Run every run of the sweep that is not done yet; run it again to resume.

    Run ids are stable: finished runs are kept, unfinished ones resume at their first unfinished
    stage, missing ones start, and infrastructure failures are retried (executor.retries).
    """
    from posttrainbench.scale.driver import run_sweep
    from posttrainbench.scale.status import render, sweep_status
    from posttrainbench.scale.sweep import load_sweep_file

    settings = load_settings(results)
    spec = load_sweep_file(file)
    if spec.sandbox is None:
        default_sandbox()  # refuses here, before anything is printed or made, if bwrap cannot run
    delay = (
        0 if retry_delay.strip() in ("0", "0s") else duration("--retry-delay", retry_delay, "30s")
    )
    stop: StageName | None = until.value if until else None  # type: ignore[assignment]
    states = run_sweep(
        spec, settings, lambda msg: console.print(escape(msg)), delay, stop, retry_failed
    )
    out.print(render(sweep_status(settings.results_dir / spec.name)))
    failed = sum(state == "failed" for state, _ in states.values())
    if failed:
        console.print(
            f"{failed} run(s) failed for a cause no retry fixes by itself (see ptb sweep status); "
            f"once fixed, try them again: ptb sweep run {file} --retry-failed",
            markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
    if any(state != "done" for state, _ in states.values()):
        sys.exit(1)


@sweep_app.command("status")
def sweep_status_cmd(
    directory: Annotated[
        Path,
        typer.Argument(
            metavar="SWEEP_DIR|SWEEP_FILE",
            help="The sweep's folder, or its sweep file (found under $PTB_RESULTS or ./results).",
        ),
    ],
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh every few seconds until Ctrl-C.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """Runs by state, time left, scores, GPU-hours used and ahead, LLM dollars so far."""
    import time

    from rich.live import Live

    from posttrainbench.scale.status import render, sweep_status
    from posttrainbench.scale.sweep import load_sweep_file

    if directory.is_file() and directory.suffix in (".toml", ".yaml", ".yml"):  # the sweep file
        directory = load_settings().results_dir / load_sweep_file(directory).name
    if as_json:
        out.print(sweep_status(directory).model_dump_json(indent=2), markup=False)
        return
    if not watch:
        out.print(render(sweep_status(directory)))
        return
    with Live(render(sweep_status(directory)), console=out, refresh_per_second=1) as live:
        while True:
            time.sleep(5)
            live.update(render(sweep_status(directory)))
