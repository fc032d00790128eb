"""`ptb view` answers only its own loopback names: a page elsewhere whose host name an attacker
re-points at 127.0.0.1 (DNS rebinding) reads nothing."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from posttrainbench.errors import ConfigError
from posttrainbench.report.viewer import serve, serve_in_thread


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[int]:
    server, url = serve_in_thread(tmp_path)
    assert url.startswith("http://127.0.0.1:")
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def _get(port: int, host: str | None, method: str = "GET", path: str = "/") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_the_viewer_answers_its_own_loopback_names(viewer: int) -> None:
    for host in (f"127.0.0.1:{viewer}", f"localhost:{viewer}", f"LOCALHOST:{viewer}"):
        status, body = _get(viewer, host)
        assert status == 200, host
        assert b"<html" in body.lower()


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example:{port}",  # DNS rebinding: the attacker's name now resolves to 127.0.0.1
        "attacker.example",
        "127.0.0.1",  # the right address on another port
        "127.0.0.1:1",
        "localhost.attacker.example:{port}",
        "127.0.0.1.nip.io:{port}",
        "",
        None,  # no Host header at all
    ],
)
def test_a_forged_host_header_gets_nothing(viewer: int, host: str | None) -> None:
    forged = None if host is None else host.format(port=viewer)
    for method, path in (("GET", "/"), ("HEAD", "/"), ("GET", "/plots/average.svg")):
        status, body = _get(viewer, forged, method, path)
        assert status == 421, (forged, method, path)
        assert body == b""
    status, body = _get(viewer, forged, "POST")
    assert status == 421 and body == b""


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_the_viewer_on_ipv6_loopback_answers_its_bracketed_name(tmp_path: Path) -> None:
    if not _ipv6_loopback():  # a kernel without IPv6 (e.g. a container with it off)
        with pytest.raises(ConfigError, match=r"^cannot serve on ::1:0: "):
            serve(tmp_path, host="::1")
        return
    server, url = serve(tmp_path, host="::1")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_port
        assert url == f"http://[::1]:{port}/"
        conn = http.client.HTTPConnection("::1", port, timeout=10)
        for host, expected in ((f"[::1]:{port}", 200), (f"evil.example:{port}", 421)):
            conn.putrequest("GET", "/", skip_host=True)
            conn.putheader("Host", host)
            conn.endheaders()
            resp = conn.getresponse()
            resp.read()
            assert resp.status == expected, host
        conn.close()
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def beside_secret(tmp_path: Path) -> Iterator[int]:
    """A viewer of tmp_path/results, with a secret file and a run folder's name beside it."""
    (tmp_path / "secret.txt").write_text("TOP-SECRET root:x:0:0\n")
    (tmp_path / "results" / "adhoc").mkdir(parents=True)
    server, _ = serve_in_thread(tmp_path / "results")
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "path",
    [
        "/runs/../../etc/passwd",
        "/runs/..%2F..%2Fetc%2Fpasswd.html",
        "/etc/passwd",
        "//etc/passwd",
        "/runs/..%2Fsecret.txt",
        "/runs/%2e%2e%2f%2e%2e%2fsecret.html",
        "/runs/..%2F..%2Fsecret.txt.html",
        "/plots/..%2F..%2Fsecret.txt",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/adhoc",
        "/secret.txt",
    ],
)
def test_no_path_reads_a_file_outside_the_pages(beside_secret: int, path: str) -> None:
    status, body = _get(beside_secret, f"127.0.0.1:{beside_secret}", "GET", path)
    assert status == 404, path
    assert b"TOP-SECRET" not in body and b"root:" not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head_are_served(beside_secret: int, method: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", beside_secret, timeout=10)
    try:
        conn.request(method, "/", body=b"x", headers={"Host": f"127.0.0.1:{beside_secret}"})
        resp = conn.getresponse()
        assert resp.read() == b""
        assert resp.status == 405 and resp.getheader("Allow") == "GET, HEAD"
    finally:
        conn.close()
