"""The browsing commands of the CLI: `ptb site` (a static HTML site) and `ptb view` (a local,
read-only web app over the same pages)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)

ResultsArg = Annotated[
    Path,
    typer.Argument(metavar="RESULTS", help="A results folder; every run below it is shown."),
]


def site_cmd(
    results: ResultsArg,
    out_dir: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="DIR", help="Where to write index.html and runs/."),
    ] = Path("ptb-site"),
    suite: Annotated[
        str | None,
        typer.Option(
            "--suite",
            metavar="ID",
            help="Build the leaderboard for this suite (ptb-v1.2, ptb-v1.0). Default: the one "
            "suite the runs follow.",
        ),
    ] = None,
) -> None:
    """Write a static HTML site: leaderboard with filters and plots, one page per run.

    The pages are self-contained and link relatively: open index.html from disk or copy the
    folder to any static host.
    """
    from posttrainbench.report.site import write_site

    with console.status("rendering the site"):
        index = write_site(results, out_dir, suite)
    print(index.resolve().as_uri())


def view_cmd(
    results: ResultsArg,
    port: Annotated[
        int, typer.Option("--port", "-p", help="Port on 127.0.0.1; 0 picks a free one.")
    ] = 8765,
    host: Annotated[
        str, typer.Option("--host", help="Loopback address to bind to (nothing else is allowed).")
    ] = "127.0.0.1",
) -> None:
    """Browse the results in a local, read-only web app; pages follow runs as they progress.

    Serves on loopback only; reach it from another machine through an SSH tunnel.
    """
    from posttrainbench.report.viewer import serve

    server, url = serve(results, host=host, port=port)
    console.print(f"serving {results} at {url} (Ctrl-C stops)", markup=False, highlight=False)
    print(url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
