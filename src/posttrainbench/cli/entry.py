"""The entry point `main`: errors, signals and exit codes around the Typer app."""

from __future__ import annotations

import contextlib
import difflib
import faulthandler
import logging
import os
import re
import signal
import sys
import threading
import time
from types import FrameType
from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.logging import RichHandler
from rich.markup import escape
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from posttrainbench import offline
from posttrainbench.cli import state
from posttrainbench.cli.common import console, out
from posttrainbench.cli.root import app
from posttrainbench.errors import HarnessInterrupted, PtbError
from posttrainbench.plain_errors import plain


def _fail(message: str, hint: str | None, code: int) -> NoReturn:
    line = f"{message} (hint: {hint})" if hint else message
    console.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def _usage_error(exc: ClickException) -> NoReturn:
    """One line for a parser error (typer's vendored click): unknown option, bad value …"""
    ctx = exc.ctx if isinstance(exc, UsageError) else None
    command = ctx.command_path if ctx is not None else "ptb"
    if isinstance(exc, NoArgsIsHelpError):  # no command: the help, then why it is an error
        out.print(exc.format_message(), markup=False, highlight=False)
        _fail("missing command", f"see '{command} --help'", 2)
    message = " ".join(exc.format_message().split()).replace("Value error, ", "")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    hint = f"see '{command} --help'"
    if given := re.search(r"'([^']*)' is not one of (.*)", message):
        match = difflib.get_close_matches(given[1], re.findall(r"'([^']*)'", given[2]), n=1)
        hint = f"did you mean {match[0]!r}? {hint}" if match else hint
    _fail(message, hint, exc.exit_code)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if state.interrupted_by is not None:
        # Already stopping: let the runner finish recording and killing the agent.
        os.write(2, b"still stopping the run; send SIGKILL to force (ptb run --resume copes)\n")
        return
    state.interrupted_by = signum
    limit = stop_limit_s()
    threading.Thread(
        target=_end_after, args=(limit, signum), name="ptb-stop-limit", daemon=True
    ).start()
    raise HarnessInterrupted(signum)


def stop_limit_s() -> float:
    """How long a stop may take: `$PTB_STOP_LIMIT_S`, 120 s unless set."""
    try:
        return max(1.0, float(os.environ.get("PTB_STOP_LIMIT_S", "120")))
    except ValueError:
        return 120.0


def _end_after(limit: float, signum: int) -> None:
    """End the process `limit` seconds after a stop signal if the stop has not ended it: an
    interrupt raised inside a finalizer is lost, a cleanup can block, and a harness whose driver
    died (PR_SET_PDEATHSIG) has nobody left to SIGKILL it. Like a SIGKILL, it leaves run.json at
    the stage in flight, which `ptb run --resume` carries on."""
    time.sleep(limit)
    os.write(2, f"the stop took over {limit:g} s; exiting now (ptb run --resume copes)\n".encode())
    os._exit(128 + signum)


def _interrupted(signum: int) -> NoReturn:
    name = signal.Signals(signum).name
    if state.current_run_dir is not None:
        message = (
            f"interrupted by {name}; run.json records where it stopped — continue with: "
            f"ptb run --resume {state.current_run_dir}"
        )
    else:
        message = f"interrupted by {name}"
    console.print(f"[red]{escape(message)}[/]", highlight=False, soft_wrap=True)
    sys.exit(128 + signum)


def main() -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(message)s", handlers=[RichHandler(console=console)]
    )
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    # where a stuck process is: `kill -USR1 PID` writes every thread's stack to its stderr
    # (where stderr is a file descriptor: not inside a caller that swapped sys.stderr)
    with contextlib.suppress(RuntimeError, AttributeError, ValueError, OSError):
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    offline.hub_offline()  # ptb's own hub reads are local; `ptb data prefetch` turns it back
    try:
        # Typer turns a KeyboardInterrupt in a command into a returned 130; the handler above
        # remembers which signal it was.
        code = app(standalone_mode=False, prog_name="ptb")
    except PtbError as exc:
        if state.interrupted_by is not None:
            _interrupted(state.interrupted_by)
        _fail(exc.message, exc.hint, exc.exit_code)
    except ClickException as exc:
        _usage_error(exc)
    except typer.Abort:
        _fail("aborted", None, 1)
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, HarnessInterrupted) else signal.SIGINT
        _interrupted(state.interrupted_by or signum)
    except ValidationError as exc:  # a value no option check caught, refused by a record
        _fail(plain(exc), "see 'ptb --help' for the option's format", 2)
    except Exception as exc:  # a bug of ptb's: still one line; PTB_DEBUG=1 shows where
        if os.environ.get("PTB_DEBUG"):
            raise
        where = f"{type(exc).__name__}: {exc}".splitlines()[0]
        _fail(f"internal error: {where}", "rerun with PTB_DEBUG=1 for the traceback", 1)
    if state.interrupted_by is not None or code == 130:
        _interrupted(state.interrupted_by or signal.SIGINT)
    sys.exit(code if isinstance(code, int) else 0)
