"""Inside its own sandbox: the HumanEval checker. Runs the benchmark's prompt (its imports and
helpers, never the model's code) and tests, and calls `check` with a proxy for the model's
function, also bound to the entry point's name (HumanEval/33's tests call it by name). Each call
of the proxy is sent to the harness as a repr of its arguments; the harness runs it in a fresh
sandbox (evaluate/answer_call.py) and answers with a plain value or an exception to raise.

Protocol, on a private copy of stdout (one JSON object a line): `{"ready": nonce}` once prompt
and tests are loaded, `{"call": repr(args)}` per call (answer read from stdin), and
`{"done": nonce}` only after check() returned normally."""

import builtins
import json
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # in the sandbox, plain_values' source runs just before this one
    from posttrainbench.evaluate.plain_values import plain_value


class CandidateError(Exception):
    """The candidate raised an exception that is not a builtin one."""


class CandidateInvalid(BaseException):
    """The candidate gave no plain answer (the harness scores the sample wrong anyway)."""


def main() -> None:
    request = json.loads(sys.stdin.readline())
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    def send(message: dict[str, object]) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    def candidate(*args: object) -> object:
        send({"call": repr(args)})
        reply = json.loads(sys.stdin.readline())
        if "ok" in reply:
            return plain_value(reply["ok"])
        if "raised" in reply:
            name, message = reply["raised"]
            kind = getattr(builtins, name, None)
            if not (isinstance(kind, type) and issubclass(kind, Exception)):
                kind = CandidateError
            raise kind(message)
        raise CandidateInvalid(reply.get("invalid"))

    space: dict[str, object] = {"__name__": "__main__"}
    exec(compile(request["prompt"], "<prompt>", "exec"), space)
    space[request["entry_point"]] = candidate  # some tests call it by name (HumanEval/33)
    exec(compile(request["test"], "<test>", "exec"), space)
    check = space["check"]
    send({"ready": request["nonce"]})
    check(candidate)  # type: ignore[operator]
    send({"done": request["nonce"]})


if __name__ == "__main__":
    main()
