"""The `cli/` package: `ptb run` fills its option record, commands keep their order, state
lives in one module."""

from __future__ import annotations

import ast
import inspect
from dataclasses import fields
from pathlib import Path

from posttrainbench.cli import app, main, state
from posttrainbench.cli.run import run
from posttrainbench.cli.run_options import RunOptions

CLI = Path(__file__).resolve().parents[2] / "src" / "posttrainbench" / "cli"


def test_run_parameters_are_exactly_the_option_record() -> None:
    # `run` builds RunOptions from its locals(): a parameter without a field (or the reverse)
    # would fail every `ptb run` with an internal error.
    params = list(inspect.signature(run).parameters)
    assert params == [f.name for f in fields(RunOptions)]


def test_commands_and_groups_keep_their_help_order() -> None:
    assert callable(main)
    commands = [c.callback.__name__ for c in app.registered_commands if c.callback]
    assert commands == [
        "run", "demo", "report", "show", "doctor", "eval_cmd", "judge_cmd", "site_cmd",
        "view_cmd", "bundle_cmd", "verify_cmd", "review_cmd", "baseline_cmd", "audit_cmd",
        "list_",
    ]  # fmt: skip
    assert [g.name for g in app.registered_groups] == ["sweep", "agents", "import", "data"]


def test_mutable_state_is_only_assigned_in_the_state_module() -> None:
    """`from state import current_run_dir` would copy it; every module goes through `state.`."""
    names = {"current_run_dir", "interrupted_by"}
    for path in CLI.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "posttrainbench.cli.state":
                assert not names & {a.name for a in node.names}, path.name
            if isinstance(node, ast.Global):
                assert not names & set(node.names), path.name
    assert state.current_run_dir is None and state.interrupted_by is None
