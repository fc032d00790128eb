"""The network as a first-class state: the harness's own loads of models and data are local-only,
and the commands that download say "no network" at once instead of retrying for minutes.

Only `ptb data prefetch` downloads from the Hugging Face hub; every other command loads local
folders and caches, so `hub_offline()` switches this process's hub client to offline mode (no
look-up of `adapter_config.json` for a local folder, no retries). It leaves the environment
alone: an agent ptb starts reaches the hub as its own environment and network policy allow.
"""

from __future__ import annotations

import os
import socket
import urllib.request
from urllib.parse import urlsplit

from posttrainbench.errors import NoNetworkError

HUB_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
PROBE_TIMEOUT_S = 3.0
DEFAULT_ENDPOINT = "https://huggingface.co"


def _env_offline() -> bool:
    return any(os.environ.get(name, "").upper() in ("1", "ON", "YES", "TRUE") for name in HUB_ENV)


def hub_offline() -> None:
    """This process's hub calls read the local cache only, as if HF_HUB_OFFLINE=1."""
    import huggingface_hub.constants as hub

    hub.HF_HUB_OFFLINE = True


def hub_online() -> None:
    """Back to what the environment says (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)."""
    import huggingface_hub.constants as hub

    hub.HF_HUB_OFFLINE = _env_offline()


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or DEFAULT_ENDPOINT


def require_network(what: str, url: str | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raise NoNetworkError in one line, within `timeout_s`, unless a TCP connection to `url`'s
    host (default: the hub's endpoint) opens; the downloads' own retries come after this."""
    if url is None and _env_offline():
        raise NoNetworkError(
            f"no network: {what} (HF_HUB_OFFLINE is set)",
            "unset HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE where there is network",
        )
    target = urlsplit(url or hub_endpoint())
    proxy = urllib.request.getproxies().get(target.scheme)
    if proxy and not urllib.request.proxy_bypass(target.hostname or ""):
        target = urlsplit(proxy if "://" in proxy else f"http://{proxy}")  # reach the proxy
    host = target.hostname or ""
    port = target.port or (443 if target.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise NoNetworkError(
            f"no network: {what} ({host}:{port}: {why})",
            "run it where there is network (HF_ENDPOINT selects a mirror; HTTPS_PROXY a proxy)",
        ) from None
