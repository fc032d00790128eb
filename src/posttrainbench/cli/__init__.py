"""The `ptb` command line: parses options, calls the runner/report modules, renders with rich.

Errors the user can cause print as one line `error: … (hint: …)` on stderr, never a traceback:
PtbError exits with its own code (2 for usage/config), usage errors of the parser (typer's
vendored click) exit 2. SIGINT and SIGTERM raise HarnessInterrupted: the runner records where
the run stopped, and the CLI exits 128 + signal number (130, 143) saying how to resume. Nothing
here holds logic that a library user would need.
"""

from posttrainbench.cli.entry import main
from posttrainbench.cli.root import app

__all__ = ["app", "main"]
