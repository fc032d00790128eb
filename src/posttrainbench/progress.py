"""Terminal progress for a run: one bar per stage; the solve bar counts the agent's budget."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from posttrainbench.records import StageName


class StageProgress:
    def __init__(self, console: Console, label: str, budget_s: int) -> None:
        self.label, self.budget_s = label, budget_s
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> StageProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_ticker()
        self.progress.stop()

    def __call__(self, stage: StageName, event: str) -> None:
        if event == "start":
            total = self.budget_s if stage == "solve" else None
            self.task = self.progress.add_task(f"{self.label} {stage}", total=total)
            if stage == "solve":
                self._start_ticker()
        else:
            self._stop_ticker()
            self.progress.update(
                self.task, total=1, completed=1, description=f"{self.label} {stage} ✓"
            )

    def _start_ticker(self) -> None:
        self._stop.clear()
        start = time.monotonic()

        def tick() -> None:
            while not self._stop.wait(0.5):
                self.progress.update(
                    self.task, completed=min(time.monotonic() - start, self.budget_s)
                )

        self._ticker = threading.Thread(target=tick, daemon=True)
        self._ticker.start()

    def _stop_ticker(self) -> None:
        self._stop.set()
        if self._ticker:
            self._ticker.join()
            self._ticker = None
