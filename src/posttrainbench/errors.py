"""Errors the user can cause: one line of message, one line of hint, never a traceback."""

from __future__ import annotations

import signal
from typing import Any


class PtbError(Exception):
    """Base of every error the CLI prints as one line plus a hint and exits non-zero on."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class UnknownNameError(PtbError):
    """A registry lookup missed: unknown agent, model, benchmark or sandbox."""


class ConfigError(PtbError):
    """A malformed option, budget, or config file."""


class NotEvaluableError(PtbError):
    """The benchmark is registered but has no evaluation implemented yet."""


class ResultsDirError(PtbError):
    """The results directory or a run directory cannot be used."""


class RunLockedError(ResultsDirError):
    """Another harness is working on this run directory right now."""


class EvaluationError(PtbError):
    """An evaluation ran but produced no score: unloadable model, crash, timeout, missing metric.

    `kind` tells the max-token ladder what the failure means: "pathology" (the model: OOM,
    runaway generations) steps down, "infrastructure" retries the same step, "fatal" stops."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, kind: str | None = None) -> None:
        super().__init__(message, hint)
        self.kind: Any = kind


class InfrastructureError(PtbError):
    """The harness, machine or provider failed (not the agent): the run can be resumed or
    retried, and is never scored."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None, *, retryable: bool = True) -> None:
        super().__init__(message, hint)
        self.retryable = retryable


class DataUnavailableError(PtbError):
    """Benchmark data is not in the local caches (and is never downloaded at evaluation)."""


class ModelUnavailableError(PtbError):
    """A base model cannot be found locally (and cannot be downloaded here)."""


class NoNetworkError(PtbError):
    """A command that downloads cannot reach the network (said at once, not after retries)."""

    exit_code = 1


class MissingDependencyError(PtbError):
    """An optional backend needs a package or system tool that is not installed."""


class HarnessInterrupted(KeyboardInterrupt):
    """The harness got SIGINT or SIGTERM: the runner records where it stopped, the CLI exits
    128 + signal number (130, 143) and says how to resume."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        return f"interrupted by {signal.Signals(self.signum).name}"
