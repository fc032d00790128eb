"""The `ptb` Typer app: its help, `--version`, and every command and group, in help order."""

from __future__ import annotations

from typing import Annotated

import typer

from posttrainbench import __version__
from posttrainbench.cli import (
    agents,
    doctor,
    evaluation,
    integrity,
    listing,
    published,
    report,
    run,
    site,
    sweep,
)
from posttrainbench.cli.common import out

APP_HELP = """\
PostTrainBench: how well can an LLM agent post-train a base LLM on its own?

Each run hands an agent a base model, a benchmark, a time budget and a sandbox; the agent
leaves final_model/, and ptb checks its integrity, evaluates it with its own pristine code
and records everything in <results>/<sweep>/<run_id>/run.json.

Start with `ptb demo` (offline, no GPU, no API key) or `ptb list agents`.
"""

APP_EPILOG = """\
\b
Examples:
  ptb demo                                          # the whole loop on the embedded tiny model
  ptb list models
  ptb run --agent recipe --base-model ptb-tiny --benchmark arith --budget 5m
  ptb show results/adhoc/<run_id>
  ptb report results/

\b
Exit codes: 0 done, 1 run failed (harness or evaluation), 2 usage or config error,
130/143 interrupted (continue with ptb run --resume RUN_DIR).
"""

app = typer.Typer(
    name="ptb",
    add_completion=False,
    no_args_is_help=True,
    help=APP_HELP,
    epilog=APP_EPILOG,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"ptb {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print ptb's version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    pass


app.command(epilog=run.RUN_EPILOG)(run.run)
app.command(epilog=run.DEMO_EPILOG)(run.demo)
app.command(epilog=report.REPORT_EPILOG)(report.report)
app.command(epilog=report.SHOW_EPILOG)(report.show)
app.command()(doctor.doctor)
app.add_typer(sweep.sweep_app, name="sweep")
app.add_typer(agents.agents_app, name="agents")
app.command("eval")(evaluation.eval_cmd)
app.command("judge")(integrity.judge_cmd)
app.command("site")(site.site_cmd)
app.command("view")(site.view_cmd)
app.command("bundle")(published.bundle_cmd)
app.command("verify")(published.verify_cmd)
import_app = typer.Typer(help="Bring results from elsewhere into your results folder.")
import_app.command("reference")(published.import_reference_cmd)
app.add_typer(import_app, name="import")
app.command("review")(integrity.review_cmd)
app.command("baseline")(evaluation.baseline_cmd)
app.command("audit")(evaluation.audit_cmd)
data_app = typer.Typer(
    help="Fill the caches the evaluation reads offline (where there is network)."
)
app.add_typer(data_app, name="data")
data_app.command("prefetch")(evaluation.prefetch_cmd)
app.command("list")(listing.list_)
