"""tests/needs.py: a missing component fails the test (never skips it), naming its install
command; a component that needs another names only the one to install first."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests import needs


@pytest.fixture
def components(monkeypatch: pytest.MonkeyPatch) -> dict[str, needs.Component]:
    fake = {
        "tool": needs.Component(lambda: False, "apt-get install tool"),
        "tool-works": needs.Component(lambda: False, "enable it", after="tool"),
        "here": needs.Component(lambda: True, "never shown"),
    }
    monkeypatch.setattr(needs, "COMPONENTS", fake)
    return fake


def test_a_missing_component_fails_with_its_hint(components: dict[str, needs.Component]) -> None:
    with pytest.raises(pytest.fail.Exception) as failed:
        needs.require("here", "tool-works", "tool")
    assert str(failed.value) == "missing: tool (apt-get install tool)"


def test_present_components_pass(components: dict[str, needs.Component]) -> None:
    needs.require("here")


def test_every_marker_names_a_known_component() -> None:
    """The `needs` marks in the suite name components that exist (a typo would KeyError late)."""
    named = set()
    for path in Path(__file__).resolve().parents[1].rglob("test_*.py"):
        if path == Path(__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("needs", "require")
            ):
                named |= {a.value for a in node.args if isinstance(a, ast.Constant)}
    assert named and named <= set(needs.COMPONENTS), sorted(named - set(needs.COMPONENTS))
