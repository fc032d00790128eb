"""A stop that does not end `ptb` (here: the interrupt raised inside a finalizer, where Python
drops it) ends the process after `$PTB_STOP_LIMIT_S`, as a SIGKILL would, and says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time

LOST_INTERRUPT = """
import os, signal, time
from posttrainbench.cli import entry

signal.signal(signal.SIGTERM, entry._on_signal)


class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)  # the stop comes while a finalizer runs
        for _ in range(100_000):
            pass


Finalized()
print("carrying on", flush=True)
while True:
    time.sleep(0.05)
"""


def test_a_lost_interrupt_still_ends_the_process_after_the_stop_limit() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", LOST_INTERRUPT],
        env=os.environ | {"PTB_STOP_LIMIT_S": "2"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    took = time.monotonic() - started
    assert "HarnessInterrupted" in done.stderr  # Python dropped it: "Exception ignored in …"
    assert done.stdout == "carrying on\n"
    assert done.returncode == 143, done.stderr
    assert "the stop took over 2 s; exiting now" in done.stderr
    assert took >= 2
