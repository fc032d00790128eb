"""Inside a fresh sandbox: one call of the model's function, for the HumanEval checker.

Reads {"code", "entry_point", "args"} from stdin, writes on a private copy of stdout one line
`{"started": true}` before any model code runs, then runs the code and the call and writes one
line, `{"ok": repr(result)}` (subclasses of builtin types as their builtin) or
`{"raised": [name, message]}`, and ends at once (os._exit), so nothing the model left (atexit,
__del__) runs after the answer. The model's own prints go to stderr. The harness trusts none of
it beyond a plain value (evaluate/answer_check.py)."""

import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # in the sandbox, plain_values' source runs just before this one
    from posttrainbench.evaluate.plain_values import plain_value


def main() -> None:
    request = json.loads(sys.stdin.readline())
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    args = plain_value(request["args"])
    if not isinstance(args, tuple):
        raise TypeError(f"the call's arguments are a {type(args).__name__}, not a tuple")
    channel.write('{"started": true}\n')
    channel.flush()
    space: dict[str, object] = {"__name__": "__main__"}
    try:
        exec(compile(request["code"], "<candidate>", "exec"), space)
        result = space[request["entry_point"]](*args)  # type: ignore[operator]
    except Exception as exc:
        reply: dict[str, object] = {"raised": [type(exc).__name__, _text(exc)]}
    else:
        reply = {"ok": repr(_builtin(result))}
    channel.write(json.dumps(reply) + "\n")
    channel.flush()
    os._exit(0)


def _builtin(value: object, depth: int = 0) -> object:
    """Subclasses of the builtin containers and scalars (Counter, OrderedDict, namedtuple, an
    int subclass) as the builtin they extend, which they compare equal to; anything else as is
    (its repr is then no plain value, and the call counts as wrong)."""
    if depth > 100:
        return value
    kind = type(value)
    if kind in (bool, int, float, complex, str, bytes, type(None)):
        return value
    if isinstance(value, dict):
        return {_builtin(k, depth + 1): _builtin(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_builtin(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_builtin(v, depth + 1) for v in value)
    if isinstance(value, set | frozenset):
        return {_builtin(v, depth + 1) for v in value}
    if isinstance(value, int):  # bool cannot be subclassed
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, complex):
        return complex(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return bytes(value)
    return value


def _text(exc: BaseException) -> str:
    try:
        return str(exc)[:500]
    except Exception:
        return "?"


if __name__ == "__main__":
    main()
