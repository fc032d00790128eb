"""`ptb doctor`: what this machine offers ptb."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from posttrainbench.cli.common import out


def doctor(
    json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """What this machine offers ptb: sandbox backends, tools, GPUs, agent CLIs, packages.

    Each missing piece comes with the command that installs it.
    """
    from posttrainbench.doctor import diagnose, render

    report = diagnose()
    if json:
        sys.stdout.write(report.model_dump_json(indent=2) + "\n")
        return
    out.print(render(report))
