"""Offline is a state, not a failure: commands that need no network make no hub request, and the
one that downloads says "no network" in one line within seconds."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from posttrainbench import runner
from posttrainbench.config import load_settings
from posttrainbench.records import RunSpec, new_run_id
from posttrainbench.results.bundle import BUNDLE_NAME, make_bundle
from tests.conftest import PtbRunner

# The hub client reads these at import: the subprocess gets them unset, so it would go online.
ONLINE = {"HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": ""}


class _Recorder(BaseHTTPRequestHandler):
    """A hub that answers every request with 503 (which the hub client retries) and logs it."""

    seen: list[str]

    def _any(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = _any

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recording_hub() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", seen
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


def test_prefetch_without_network_fails_in_one_line_at_once(ptb: PtbRunner, tmp_path: Path) -> None:
    env = ONLINE | {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}
    started = time.monotonic()
    done = ptb("data", "prefetch", "--benchmarks", "gsm8k", env=env, timeout=60)
    took = time.monotonic() - started
    assert took < 5, f"{took:.1f}s: {done.stderr}"
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: no network: ptb data prefetch cannot reach the Hugging Face hub")
    assert "(hint: " in line and "Traceback" not in done.stderr
    assert "LocalEntryNotFoundError" not in done.stderr + done.stdout


def test_prefetch_with_hub_offline_set_says_so(ptb: PtbRunner) -> None:
    done = ptb("data", "prefetch", "--models", "Qwen/Qwen3-4B-Base", env={"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "no network" in line and "HF_HUB_OFFLINE is set" in line


@pytest.fixture(scope="module")
def bundle(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    settings = load_settings(tmp_path_factory.mktemp("offline-results"))
    spec = RunSpec(
        run_id=new_run_id("noop", "ptb-tiny", "arith"),
        agent="noop",
        base_model="ptb-tiny",
        benchmark="arith",
        budget_s=60,
        sandbox="host",
    )
    run_dir = runner.create_run(spec, settings)
    record = runner.execute(run_dir, settings)
    assert record.outcome and record.outcome.source == "evaluated"
    out = tmp_path_factory.mktemp("offline-bundle")
    make_bundle(run_dir, out)
    return out / BUNDLE_NAME


def test_verify_makes_no_hub_request_and_leaves_no_temporary_folder(
    ptb: PtbRunner, bundle: Path, tmp_path: Path, recording_hub: tuple[str, list[str]]
) -> None:
    endpoint, seen = recording_hub
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = ONLINE | {"HF_ENDPOINT": endpoint, "TMPDIR": str(tmp)}
    started = time.monotonic()
    done = ptb("verify", str(bundle), env=env)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert "verdict: verified" in done.stderr
    assert seen == [], seen  # not one look-up of adapter_config.json, config.json …
    assert "Retrying" not in done.stderr and "HTTP Error" not in done.stderr
    assert not list(tmp.glob("ptb-verify-*")), list(tmp.iterdir())
    print(f"ptb verify took {took:.1f}s")


def test_agent_install_without_network_fails_in_one_line_at_once(
    ptb: PtbRunner, tmp_path: Path
) -> None:
    empty = tmp_path / "agents"
    empty.mkdir()
    env = {
        "npm_config_registry": f"http://127.0.0.1:{_closed_port()}/",
        "PTB_AGENTS_DIR": str(empty),
    }
    started = time.monotonic()
    done = ptb("agents", "install", "codex", env=env, timeout=120)
    assert time.monotonic() - started < 10, done.stderr
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: no network: npm install @openai/codex cannot reach the npm")
