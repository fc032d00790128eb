"""What the egress proxy costs on loopback: time to open a CONNECT tunnel, and the throughput of a
100 MB download through a tunnel against a direct TCP connection to the same local server.

python benchmarks/egress_overhead.py [--mb 100] [--tunnels 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import socket
import socketserver
import statistics
import tempfile
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from pathlib import Path

from posttrainbench.sandbox.egress import EgressPolicy, EgressProxy

CHUNK = 1 << 20


class _Source(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    size = 0


class _Send(socketserver.BaseRequestHandler):
    """Sends `size` bytes if the client writes b'go', else just waits for it to close."""

    def handle(self) -> None:
        if self.request.recv(2) != b"go":
            return
        block = b"\0" * CHUNK
        left = self.server.size  # type: ignore[attr-defined]
        while left > 0:
            n = min(left, CHUNK)
            self.request.sendall(block[:n])
            left -= n


def _drain(sock: socket.socket) -> int:
    total = 0
    buf = bytearray(CHUNK)
    while n := sock.recv_into(buf):
        total += n
    return total


def _tunnel(proxy: EgressProxy, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(proxy.socket_path))
    sock.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n".encode())
    expected = b"HTTP/1.1 200 Connection established\r\n\r\n"
    got = b""
    while len(got) < len(expected):
        got += sock.recv(len(expected) - len(got))
    assert got == expected, got
    return sock


def _timed(fn: Callable[[], None], times: int) -> float:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _serve_source(size: int, ports: Queue[int]) -> None:
    server = _Source(("127.0.0.1", 0), _Send)
    server.size = size
    ports.put(server.server_address[1])
    server.serve_forever()


def _measure(proxy_socket: str, port: int, size: int, tunnels: int, repeats: int) -> list[float]:
    """Client side, in a process of its own as the agent would be: the proxy's threads do not
    share its interpreter lock."""
    proxy = EgressProxy(EgressPolicy(), Path(proxy_socket), Path(os.devnull))

    def open_direct() -> None:
        socket.create_connection(("127.0.0.1", port)).close()

    def open_tunnel() -> None:
        _tunnel(proxy, port).close()

    def download(connect: Callable[[], socket.socket]) -> Callable[[], None]:
        def run() -> None:
            with connect() as sock:
                sock.sendall(b"go")
                assert _drain(sock) == size

        return run

    return [
        _timed(open_direct, tunnels),
        _timed(open_tunnel, tunnels),
        _timed(download(lambda: socket.create_connection(("127.0.0.1", port))), repeats),
        _timed(download(lambda: _tunnel(proxy, port)), repeats),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--tunnels", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * 1_000_000

    mp = multiprocessing.get_context("spawn")
    ports: Queue[int] = mp.Queue()
    source = mp.Process(target=_serve_source, args=(size, ports), daemon=True)
    source.start()
    port = ports.get(timeout=30)
    workdir = Path(tempfile.mkdtemp(prefix="ptb-egress-bench-"))
    policy = EgressPolicy(allow_hosts=[f"127.0.0.1:{port}"])
    with (
        EgressProxy(policy, workdir / "p.sock", workdir / "egress.jsonl") as proxy,
        mp.Pool(1) as pool,
    ):
        job = (str(proxy.socket_path), port, size, args.tunnels, args.repeats)
        direct_open, tunnel_open, direct_s, proxied_s = pool.apply(_measure, job)
    source.terminate()
    shutil.rmtree(workdir, ignore_errors=True)

    print(f"{os.cpu_count()} CPUs; proxy, client and server in separate processes")
    print(f"open a connection (median of {args.tunnels}):")
    print(f"  direct TCP connect        {direct_open * 1e3:8.3f} ms")
    print(f"  CONNECT tunnel via proxy  {tunnel_open * 1e3:8.3f} ms")
    print(f"download {args.mb} MB (median of {args.repeats}):")
    print(f"  direct                    {size / direct_s / 1e6:8.0f} MB/s  ({direct_s:.3f} s)")
    print(f"  through the proxy         {size / proxied_s / 1e6:8.0f} MB/s  ({proxied_s:.3f} s)")
    print(f"  proxy / direct            {direct_s / proxied_s:8.2f}")


if __name__ == "__main__":
    main()
