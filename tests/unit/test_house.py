"""A house that stays small: no function over 80 lines in src/, no `assert` in src/.

`python tests/unit/test_house.py` prints the functions over the limit and the largest files.
"""

from __future__ import annotations

import ast
from pathlib import Path
from textwrap import indent
from typing import NamedTuple

SRC = Path(__file__).resolve().parents[2] / "src"
MAX_FUNCTION_LINES = 80

# Functions allowed over the limit: none. An entry that is no longer over the limit fails the
# test until it is removed, so this list can only stay empty.
ALLOWED_LONG: set[str] = set()


class LongFunction(NamedTuple):
    key: str  # path relative to src/ :: qualified name
    lines: int


def _functions(tree: ast.AST) -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    """Every function and method in `tree`, nested ones included, with its qualified name."""
    found: list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                found.append((prefix + child.name, child))
                visit(child, f"{prefix}{child.name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def function_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first decorator (or `def`) to the last line of the body."""
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    end = node.end_lineno if node.end_lineno is not None else node.lineno
    return end - start + 1


def long_functions(source: str, name: str) -> list[LongFunction]:
    tree = ast.parse(source, name)
    return [
        LongFunction(f"{name}::{qual}", function_lines(node))
        for qual, node in _functions(tree)
        if function_lines(node) > MAX_FUNCTION_LINES
    ]


def asserts(source: str, name: str) -> list[str]:
    tree = ast.parse(source, name)
    return [f"{name}:{n.lineno}" for n in ast.walk(tree) if isinstance(n, ast.Assert)]


def _sources() -> list[tuple[str, str]]:
    return [
        (path.relative_to(SRC).as_posix(), path.read_text(encoding="utf-8"))
        for path in sorted(SRC.rglob("*.py"))
    ]


def test_no_function_over_the_limit() -> None:
    found = [f for name, text in _sources() for f in long_functions(text, name)]
    over = [f"{f.key} ({f.lines} lines)" for f in found if f.key not in ALLOWED_LONG]
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines: {over}"
    stale = ALLOWED_LONG - {f.key for f in found}
    assert not stale, f"no longer over the limit (or gone): remove from ALLOWED_LONG: {stale}"


def test_no_assert_in_src() -> None:
    found = [a for name, text in _sources() for a in asserts(text, name)]
    assert not found, f"`assert` in src/ (stripped under -O): raise a real error: {found}"


def test_the_checks_see_what_they_forbid() -> None:
    body = "".join(f"x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES - 2))
    at_limit = "@decorated\ndef f():\n" + indent(body, "    ")
    assert long_functions(at_limit, "m.py") == []
    over = "class C:\n    @a\n    @b\n    def g(self):\n" + indent(body, "        ")
    assert long_functions(over, "m.py") == [LongFunction("m.py::C.g", MAX_FUNCTION_LINES + 1)]
    nested = "def outer():\n    def inner():\n" + indent(body + "y = 1\nz = 2\n", "        ")
    assert [f.key for f in long_functions(nested, "m.py")] == [
        "m.py::outer",
        "m.py::outer.<locals>.inner",
    ]
    assert asserts("def f(x):\n    assert x is not None\n", "m.py") == ["m.py:2"]


def main() -> None:
    sources = _sources()
    found = sorted(
        (f for name, text in sources for f in long_functions(text, name)), key=lambda f: -f.lines
    )
    print(f"functions over {MAX_FUNCTION_LINES} lines:")
    for f in found:
        print(f"  {f.lines:5d}  {f.key}{'  (allowed)' if f.key in ALLOWED_LONG else ''}")
    print("largest files:")
    sizes = sorted(((len(text.splitlines()), name) for name, text in sources), reverse=True)
    for lines, name in sizes[:10]:
        print(f"  {lines:5d}  {name}")
    print(f"asserts: {sum(len(asserts(text, name)) for name, text in sources)}")


if __name__ == "__main__":
    main()
