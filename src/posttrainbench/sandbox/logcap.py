"""Capped agent logs: the agent writes into a pipe; a harness thread keeps the first N bytes of
each stream in its log file and counts the rest, so a chatty or hostile agent cannot fill the
disk through stdout. The cap holds per run: a resumed attempt appends after what is already kept.
If the harness dies, the pipe's reader is gone and the agent's next write fails (EPIPE/SIGPIPE).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from posttrainbench.records import LogStats

CHUNK = 1 << 16


class CappedLog:
    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path, self.max_bytes = path, max_bytes
        self.stats = LogStats()
        self._read_fd, self.write_fd = os.pipe()
        self._thread = threading.Thread(target=self._pump, name=f"log-{path.name}", daemon=True)

    def __enter__(self) -> CappedLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def close_writer(self) -> None:
        """Call once the agent holds its own copy: then end-of-file means the agent is gone."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def __exit__(self, *exc: object) -> None:
        self.close_writer()
        # Every writer is dead by now (the supervisor verified it); a short join is enough.
        self._thread.join(timeout=10)

    def _pump(self) -> None:
        with self.path.open("ab") as out:
            room = max(0, self.max_bytes - out.tell())
            while chunk := os.read(self._read_fd, CHUNK):
                keep = chunk[:room]
                if keep:
                    out.write(keep)
                    out.flush()
                    room -= len(keep)
                    self.stats.kept_bytes += len(keep)
                self.stats.dropped_bytes += len(chunk) - len(keep)
        os.close(self._read_fd)
