"""`ptb list`: the registered models, benchmarks, agents, sandboxes and suites."""

from __future__ import annotations

from typing import Annotated

import typer

from posttrainbench.catalog import AGENTS, BENCHMARKS, MODELS
from posttrainbench.catalog.suites import DEFAULT_SUITE, SUITES
from posttrainbench.cli.common import ListKind, out
from posttrainbench.sandbox import SANDBOXES


def list_(
    kind: Annotated[
        ListKind,
        typer.Argument(
            metavar="KIND", help="What to list: models, benchmarks, agents, sandboxes or suites."
        ),
    ],
) -> None:
    """List the registered models, benchmarks, agents or sandboxes."""
    if kind is ListKind.models:
        for name, m in MODELS:
            out.print(f"{name:32} {m.display_name:22} instruct: {m.instruct or '—'}", markup=False)
    elif kind is ListKind.benchmarks:
        for name, b in BENCHMARKS:
            state = f"{b.n_items or '?'} items, {b.metric_label}" if b.evaluable else "—"
            judged = ", LLM-judged" if b.judged else ""
            out.print(f"{name:18} {b.display_name:20} {state}{judged}", markup=False)
    elif kind is ListKind.agents:
        for name, a in AGENTS:
            out.print(f"{name:12} {a.description}", markup=False)
    elif kind is ListKind.suites:
        for name, s in SUITES:
            default = " (default)" if name == DEFAULT_SUITE else ""
            out.print(f"{name:10} {s.published}{default}: {s.description}", markup=False)
    else:
        for name, cls in SANDBOXES:
            c = cls.capabilities
            limits = ", ".join(c.limits) or "none"
            out.print(
                f"{name:10} isolation: {'yes' if c.isolation else 'no':3}  network policy: "
                f"{'yes' if c.network_policy else 'no':3}  GPUs: {'yes' if c.gpu else 'no':3}  "
                f"limits: {limits}",
                markup=False,
            )
