"""Perturbed twins of test items whose answer stays computable, for the memorisation probe.

Each function takes one item and a seeded `random.Random` and returns its twin, or None when the
item cannot be perturbed safely (the probe then leaves it out):

- `gsm8k_twin`: the question's whole numbers changed, and the worked solution recomputed from
  its calculator notes (`<<48/2=24>>`) with `calc`, a tiny exact evaluator of + - * / and
  parentheses (never `eval`). A twin keeps every step's result whole where it was whole and
  non-negative where it was, so it reads like a GSM8K item, not like a harder one.
- `rename_code`: the functions a HumanEval prompt defines and their arguments renamed, the same
  way in prompt, canonical solution and test (a name that is also used as an attribute, keyword
  or builtin is left alone).
- `reorder_choices`: a multiple-choice item with its choices in another order, the answer letter
  following the correct choice.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import io
import keyword
import random
import re
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

TRIES = 40
_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?![\d,])|(?<![\w.])\d+(?:\.\d+)?(?![\w])")
_NOTE = re.compile(r"<<([^<>=]*)=([^<>=]*)>>")


class CalcError(ValueError):
    """An expression `calc` does not evaluate (anything but numbers, + - * / and parentheses)."""


def calc(expr: str) -> Fraction:
    """The exact value of an arithmetic expression: numbers, + - * /, unary minus, parentheses."""
    try:
        tree = ast.parse(expr.replace(",", "").strip(), mode="eval")
    except SyntaxError as exc:
        raise CalcError(f"not an expression: {expr!r}") from exc
    return _value(tree.body)


def _value(node: ast.expr) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _value(node.operand)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div):
            if right == 0:
                raise CalcError("division by zero")
            return left / right
    raise CalcError(f"unsupported expression: {ast.dump(node)[:80]}")


def _number(text: str) -> Fraction:
    return Fraction(text.replace(",", ""))


def _format(value: Fraction, like: str) -> str | None:
    """`value` written as `like` is (commas, decimals); None if it has no finite decimal form."""
    if value.denominator == 1:
        whole = int(value)
        return f"{whole:,}" if "," in like else str(whole)
    for places in range(1, 7):
        scaled = value * 10**places
        if scaled.denominator == 1:
            return f"{float(value):.{places}f}"
    return None


def _substitute(text: str, mapping: dict[Fraction, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        return mapping.get(_number(m.group(0)), m.group(0))

    return _NUMBER.sub(repl, text)


@dataclass(frozen=True)
class MathTwin:
    question: str
    answer: str  # the worked solution, calculator notes and `#### n` recomputed
    final: str


def _eligible(question: str) -> list[Fraction]:
    """The question's whole numbers ≥ 2 that are not part of a fraction like 3/4."""
    found: list[Fraction] = []
    for m in _NUMBER.finditer(question):
        before, after = question[max(0, m.start() - 1) : m.start()], question[m.end() : m.end() + 1]
        value = _number(m.group(0))
        if "/" in before + after or "." in m.group(0) or value < 2:
            continue
        if value not in found:
            found.append(value)
    return found


def _like(value: int, rng: random.Random) -> int:
    """A whole number near `value` of the same shape: as many digits, as many trailing zeros
    (a round 2,400 becomes another round number, 48 another two-digit one)."""
    zeros = len(str(value)) - len(str(value).rstrip("0"))
    step = 10**zeros
    lo, hi = max(2, value // 2), max(value * 3 // 2, value + 3)
    shaped = [n for n in range(lo - lo % step, hi + 1, step) if len(str(n)) == len(str(value))]
    choices = [n for n in shaped if n != value and n >= 2 and (n // step) % 10 != 0]
    return rng.choice(choices) if choices else value


def gsm8k_twin(question: str, answer: str, rng: random.Random) -> MathTwin | None:
    """The item with its numbers changed and its solution recomputed, or None."""
    notes = _NOTE.findall(answer)
    _, sep, final = answer.rpartition("####")
    if not notes or not sep:
        return None
    try:
        for expr, stated in notes:
            if calc(expr) != _number(stated):
                return None  # the chain does not re-evaluate as written
        final_value = _number(final.strip())
    except (CalcError, ValueError, ZeroDivisionError):
        return None
    if final_value not in {_number(s) for _, s in notes}:
        return None
    eligible = _eligible(question)
    if not eligible:
        return None
    for _ in range(TRIES):
        twin = _try(question, answer, notes, eligible, rng)
        if twin is not None:
            return twin
    return None


def _try(
    question: str,
    answer: str,
    notes: list[tuple[str, str]],
    eligible: list[Fraction],
    rng: random.Random,
) -> MathTwin | None:
    new = {value: Fraction(_like(int(value), rng)) for value in eligible}
    if all(new[v] == v for v in eligible) or len(set(new.values())) < len(new):
        return None
    steps: list[tuple[Fraction, Fraction]] = []
    for expr, stated in notes:

        def repl(m: re.Match[str]) -> str:
            v = _number(m.group(0))
            return str(new.get(v, v))

        try:
            value = calc(_NUMBER.sub(repl, expr))
        except CalcError:
            return None
        old = _number(stated)
        whole_lost = old.denominator == 1 and value.denominator != 1
        if whole_lost or old >= 0 > value or old > 0 >= value:
            return None
        if old in new and new[old] != value:
            return None  # a result equal to a changed number, or to another step's result
        new[old] = value
        steps.append((old, value))
    written: dict[Fraction, str] = {}
    for m in _NUMBER.finditer(question + "\n" + answer):
        old = _number(m.group(0))
        if old in new:
            text = _format(new[old], m.group(0))
            if text is None:
                return None
            written.setdefault(old, text)
    new_answer = _substitute(answer, written)
    final = new_answer.rpartition("####")[2].strip()
    return MathTwin(question=_substitute(question, written), answer=new_answer, final=final)


# --- HumanEval: consistent renaming -------------------------------------------------------------

FUNCTION_WORDS = ("blend", "sift", "weigh", "trace", "fold", "probe", "rank", "mark", "scan")
NOUNS = ("ember", "quill", "lumen", "pebble", "sprig", "cobalt", "thistle", "marble", "gusto",
         "nectar", "tundra", "falcon", "zephyr", "saffron", "basalt", "wicker")  # fmt: skip
_RESERVED = set(dir(builtins)) | set(keyword.kwlist) | {"self", "cls", "candidate", "check"}


@dataclass(frozen=True)
class CodeTwin:
    prompt: str
    solution: str
    test: str
    entry_point: str
    renamed: dict[str, str]  # old name → new name


def defined_names(code: str) -> tuple[list[str], list[str]]:
    """The top-level functions `code` defines, and their positional arguments."""
    functions: list[str] = []
    arguments: list[str] = []
    with contextlib.suppress(SyntaxError):
        for node in ast.parse(code).body:
            if isinstance(node, ast.FunctionDef):
                functions.append(node.name)
                arguments += [a.arg for a in [*node.args.posonlyargs, *node.args.args]]
    return functions, arguments


def _unsafe_names(trees: list[ast.Module]) -> set[str]:
    """Names used in roles a rename must not touch: attributes, keywords of calls, imports."""
    unsafe: set[str] = set(_RESERVED)
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                unsafe.add(node.attr)
            elif isinstance(node, ast.keyword) and node.arg:
                unsafe.add(node.arg)
            elif isinstance(node, ast.alias):
                unsafe.add((node.asname or node.name).split(".")[0])
    return unsafe


def rename_code(
    prompt: str,
    solution: str,
    test: str,
    entry_point: str,
    rng: random.Random,
    pools: tuple[Sequence[str], Sequence[str]] | None = None,
) -> CodeTwin | None:
    """The problem with the prompt's functions and their arguments renamed everywhere, to names
    drawn from `pools` (function names, argument names: e.g. those other problems use, so the
    twin reads as naturally as the original) or else from neutral words."""
    try:
        trees = [ast.parse(prompt + solution), ast.parse(test)]
    except SyntaxError:
        return None
    functions, arguments = defined_names(prompt + solution)
    defined = [f for f in functions if f in prompt]
    unsafe = _unsafe_names(trees)
    text = prompt + solution + test
    old = [n for n in dict.fromkeys(defined + arguments) if n not in unsafe]
    if entry_point not in old:
        return None
    if pools is None:
        pools = ([f"{w}_{n}" for w in FUNCTION_WORDS for n in NOUNS], NOUNS)
    taken = set(re.findall(r"\w+", text)) | unsafe
    fresh_functions = sorted({n for n in pools[0] if n not in taken})
    fresh_arguments = sorted({n for n in pools[1] if n not in taken} - set(fresh_functions))
    need_functions = sum(1 for n in old if n in defined)
    if need_functions > len(fresh_functions) or len(old) - need_functions > len(fresh_arguments):
        return None
    new_functions = iter(rng.sample(fresh_functions, k=need_functions))
    new_arguments = iter(rng.sample(fresh_arguments, k=len(old) - need_functions))
    mapping = {n: next(new_functions if n in defined else new_arguments) for n in old}
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, mapping)) + r")\b")
    code = _renamed(prompt + solution, mapping, pattern)
    head = _renamed(prompt, mapping, pattern)
    test_code = _renamed(test, mapping, pattern)
    if code is None or head is None or test_code is None or not code.startswith(head):
        return None
    cut = len(head)
    twin = CodeTwin(code[:cut], code[cut:], test_code, mapping[entry_point], mapping)
    try:
        ast.parse(twin.prompt + twin.solution)
        ast.parse(twin.test)
    except SyntaxError:
        return None
    return twin


def _docstrings(tree: ast.Module) -> set[tuple[int, int]]:
    """Where each docstring starts (line, column): strings that are documentation, not data."""
    starts = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                starts.add((first.lineno, first.col_offset))
    return starts


def _renamed(code: str, mapping: dict[str, str], pattern: re.Pattern[str]) -> str | None:
    """`code` with names renamed in code, comments and docstrings, never in other strings
    (a test's data); None if it does not tokenise."""
    try:
        docs = _docstrings(ast.parse(code))
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (SyntaxError, tokenize.TokenError):
        return None
    lines = code.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    edits: list[tuple[int, int, str]] = []
    for tok in tokens:
        text = tok.string
        if tok.type == tokenize.NAME and text in mapping:
            new = mapping[text]
        elif tok.type == tokenize.COMMENT or (tok.type == tokenize.STRING and tok.start in docs):
            new = pattern.sub(lambda m: mapping[m.group(1)], text)
        else:
            continue
        start = offsets[tok.start[0] - 1] + tok.start[1]
        end = offsets[tok.end[0] - 1] + tok.end[1]
        edits.append((start, end, new))
    out, last = [], 0
    for start, end, new in edits:
        out += [code[last:start], new]
        last = end
    return "".join(out) + code[last:]


# --- multiple choice: reordering ----------------------------------------------------------------


def reorder_choices(
    choices: list[str], answer: int, rng: random.Random
) -> tuple[list[str], int] | None:
    """The choices in a different order and the new index of the correct one."""
    if len(choices) < 2 or len(set(choices)) < len(choices):
        return None
    order = list(range(len(choices)))
    while order == list(range(len(choices))):
        rng.shuffle(order)
    return [choices[i] for i in order], order.index(answer)
