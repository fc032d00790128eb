"""Plain values across the HumanEval answer boundary: what `repr` writes and `plain_value`
reads back. Only literals cross (numbers, strings, bytes, booleans, None, and lists, tuples,
sets and dicts of them, with `inf`/`nan`); anything else raises ValueError. Standard library
only: this module's source also runs inside the sandboxes (see evaluate/answer_check.py)."""

import ast
import math

_NAMES = {"inf": math.inf, "nan": math.nan}


def plain_value(text: str) -> object:
    """The value `text` (a repr) denotes, if it is a plain value; else ValueError."""
    try:
        return _value(ast.parse(text.strip(), mode="eval").body)
    except (SyntaxError, RecursionError, MemoryError, TypeError) as exc:
        raise ValueError(f"not a plain value: {type(exc).__name__}") from None


def _value(node: ast.AST) -> object:
    if isinstance(node, ast.Constant) and node.value is not Ellipsis:
        return node.value
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, ast.Tuple):
        return tuple(_value(e) for e in node.elts)
    if isinstance(node, ast.List):
        return [_value(e) for e in node.elts]
    if isinstance(node, ast.Set):
        return {_value(e) for e in node.elts}
    if isinstance(node, ast.Call) and _is_empty_set(node):
        return set()
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {_value(k): _value(v) for k, v in zip(node.keys, node.values, strict=True)}  # type: ignore[arg-type]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _value(node.operand)
        if isinstance(operand, int | float | complex) and not isinstance(operand, bool):
            return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        left, right = _value(node.left), _value(node.right)
        if isinstance(left, int | float) and isinstance(right, complex):  # a complex's repr
            return left + right if isinstance(node.op, ast.Add) else left - right
    raise ValueError(f"not a plain value: {type(node).__name__}")


def _is_empty_set(node: ast.Call) -> bool:
    func = node.func
    return isinstance(func, ast.Name) and func.id == "set" and not node.args and not node.keywords
