"""Where the CLI stands, for the message on an interruption (always used as `state.NAME`)."""

from __future__ import annotations

from pathlib import Path

# The run directory a run is executing in right now.
current_run_dir: Path | None = None
# The signal that is stopping ptb, once one arrived.
interrupted_by: int | None = None
