"""`ptb agents install` and `ptb agents list`: the agent CLIs at their pinned versions."""

from __future__ import annotations

from typing import Annotated

import typer

from posttrainbench.catalog import AGENTS
from posttrainbench.cli.common import out
from posttrainbench.config import load_settings
from posttrainbench.errors import ConfigError

agents_app = typer.Typer(help="Install and check the agent CLIs (pinned npm versions).")


@agents_app.command("install")
def agents_install(
    names: Annotated[
        list[str] | None,
        typer.Argument(metavar="[NAME]...", help="Agents to install (default: every CLI agent)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Reinstall even if present.")] = False,
) -> None:
    """Install agent CLIs from npm at their pinned versions into ptb's own prefix.

    Example: ptb agents install claude-code codex
    """
    from posttrainbench.agents import get_agent, install

    settings = load_settings()
    chosen = names or [n for n, _ in AGENTS if get_agent(n).cli is not None]
    for name in chosen:
        cli = get_agent(AGENTS.get(name).name).cli
        if cli is None:
            raise ConfigError(f"agent {name!r} has no CLI to install", "see: ptb agents list")
        info = install.install(name, cli, settings, force=force)
        out.print(f"{name:12} {info.package}@{info.version}  {info.path}", markup=False)


@agents_app.command("list")
def agents_list() -> None:
    """The CLI agents, their pinned versions and whether they are installed here."""
    from posttrainbench.agents import get_agent, install
    from posttrainbench.errors import PtbError

    settings = load_settings()
    for name, _ in AGENTS:
        agent = get_agent(name)
        if agent.cli is None:
            continue
        try:
            state = "installed: " + install.locate(name, agent.cli, settings).path
        except PtbError as exc:
            state = f"not installed ({exc.hint})" if exc.hint else str(exc)
        pinned = f"{agent.cli.package}@{agent.cli.version}"
        models = ", ".join(
            f"{p}: {agent.default_model(p)}" for p in getattr(agent, "providers", ())
        )
        out.print(f"{name:12} {pinned:34} {state}\n{'':12} default model {models}", markup=False)
