"""What the commands share: the consoles, the option types used by several commands, the choices."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from posttrainbench.records import STAGES

console = Console(stderr=True)
out = Console(soft_wrap=True)

ResultsOpt = Annotated[
    Path | None,
    typer.Option(
        "--results",
        metavar="DIR",
        help="Root folder of all run directories (default: $PTB_RESULTS or ./results).",
    ),
]


SuiteOpt = Annotated[
    str | None,
    typer.Option(
        "--suite",
        metavar="ID",
        help="Protocol version: ptb-v1.2 (default: six benchmarks, several seeds) or ptb-v1.0 "
        "(the paper's seven); see: ptb list suites.",
    ),
]

BackendOpt = Annotated[
    str,
    typer.Option(
        "--eval-backend",
        metavar="NAME",
        help="auto (default: engine with CUDA, else hf), engine, hf or vllm.",
    ),
]
JudgeOpt = Annotated[
    str | None,
    typer.Option(
        metavar="MODEL",
        help="LLM judge of judged benchmarks and of integrity, e.g. openai/gpt-5-mini.",
    ),
]
JudgeUrlOpt = Annotated[
    str | None, typer.Option(metavar="URL", help="OpenAI-compatible endpoint of the judge.")
]


class ListKind(StrEnum):
    models = "models"
    benchmarks = "benchmarks"
    agents = "agents"
    sandboxes = "sandboxes"
    suites = "suites"


class ReportFormat(StrEnum):
    md = "md"
    csv = "csv"
    json = "json"


class NetworkOpt(StrEnum):
    none = "none"
    allowlist = "allowlist"
    open = "open"


class ProviderOpt(StrEnum):
    anthropic = "anthropic"
    openai = "openai"
    gemini = "gemini"


class ResumePolicyOpt(StrEnum):
    remaining = "remaining"
    deadline = "deadline"


StageOpt = StrEnum("StageOpt", {name: name for name in STAGES})  # type: ignore[misc]
