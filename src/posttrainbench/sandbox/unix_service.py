"""Serving a harness-side service on a unix socket (the relay, the scoring service): a stale
socket at the path is replaced (anything else there is refused), the socket is private to the
harness (0600), and the server runs on a daemon thread."""

from __future__ import annotations

import os
import socketserver
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from posttrainbench.errors import ConfigError, InfrastructureError

S = TypeVar("S", bound=socketserver.BaseServer)


def serve(path: Path, make_server: Callable[[str], S], what: str) -> tuple[S, threading.Thread]:
    """Listen on `path` with the server `make_server(path)` builds and serve it on a thread
    named `ptb-<what>`; InfrastructureError where the socket cannot be made."""
    if path.is_symlink() or path.exists():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"{path} exists and is not a socket", "remove it or pick another")
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = make_server(str(path))
    except OSError as e:
        raise InfrastructureError(
            f"cannot listen on {what} socket {path}: {e.strerror}", "check the directory"
        ) from None
    os.chmod(path, 0o600)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"ptb-{what}", daemon=True
    )
    thread.start()
    return server, thread
