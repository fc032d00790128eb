"""Latency the API relay adds: calls to a local fake Anthropic upstream, directly and through the
relay's unix socket. The fake upstream, the relay and the client each run in their own process
(as in a run: provider, harness, sandbox), with keep-alive clients on both paths; the sandbox's
socat bridge is not included.

python benchmarks/relay_overhead.py [calls]
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx

from posttrainbench.sandbox.relay import Relay, new_dummy_token
from posttrainbench.sandbox.relay.fake import (
    SSE,
    FakeUpstream,
    Reply,
    anthropic_json,
    anthropic_sse,
)

BODY = b'{"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": []}'
STREAM_BODY = b'{"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true, "messages": []}'
TEXT = " ".join(["token"] * 200)
EVENTS = len(anthropic_sse(TEXT))


def upstream_process(out: Queue[Any], stop: Event) -> None:
    with FakeUpstream() as up:
        up.script("/v1/messages", Reply(chunks=[anthropic_json(TEXT, input_tokens=50)]))
        stream = anthropic_sse(TEXT, input_tokens=50, output_tokens=200)
        up.script("/sse/v1/messages", Reply(chunks=stream, content_type=SSE))
        out.put(up.url)
        stop.wait()


def relay_process(base: str, tmp: str, token: str, out: Queue[Any], stop: Event) -> None:
    relays = []
    for name, url in (("json", base), ("sse", base + "/sse")):
        env = {"ANTHROPIC_API_KEY": "sk-bench-not-a-key", "ANTHROPIC_BASE_URL": url}
        sock, log = Path(tmp) / f"{name}.sock", Path(tmp) / f"{name}.jsonl"
        relays.append(Relay("anthropic", sock, log, token, environ=env).start())
    out.put("ready")
    stop.wait()
    for relay in relays:
        relay.wait_idle()
        relay.stop()
    out.put([r.usage().model_dump(mode="json") for r in relays])


def timed(
    client: httpx.Client, path: str, body: bytes, headers: dict[str, str]
) -> tuple[float, ...]:
    """(time to the first body byte, time to the end of the body), in ms."""
    t0 = time.perf_counter()
    first = None
    with client.stream("POST", path, content=body, headers=headers) as r:
        for _ in r.iter_raw():
            first = first or time.perf_counter()
        assert r.status_code == 200, r.status_code
    end = time.perf_counter()
    return 1000 * ((first or end) - t0), 1000 * (end - t0)


def series(run: Callable[[], tuple[float, ...]], n: int) -> tuple[list[float], list[float]]:
    for _ in range(5):
        run()  # warm up the connections
    results = [run() for _ in range(n)]
    return [r[0] for r in results], [r[1] for r in results]


def line(label: str, direct: list[float], relayed: list[float]) -> str:
    d, r = statistics.median(direct), statistics.median(relayed)
    p90 = statistics.quantiles(relayed, n=10)[-1]
    return f"{label:38} {d:7.3f} {r:7.3f} {r - d:+8.3f}   (relay p90 {p90:.3f})"


def main(n: int) -> None:
    ctx = mp.get_context("spawn")
    out: Queue[Any] = ctx.Queue()
    stop = ctx.Event()
    token = new_dummy_token()
    with tempfile.TemporaryDirectory(prefix="ptbr-") as tmp:
        upstream = ctx.Process(target=upstream_process, args=(out, stop))
        upstream.start()
        base = out.get(timeout=60)
        relay = ctx.Process(target=relay_process, args=(base, tmp, token, out, stop))
        relay.start()
        assert out.get(timeout=60) == "ready"

        direct = httpx.Client(base_url=base)
        via_json = httpx.Client(transport=httpx.HTTPTransport(uds=f"{tmp}/json.sock"))
        via_sse = httpx.Client(transport=httpx.HTTPTransport(uds=f"{tmp}/sse.sock"))
        auth = {"x-api-key": token, "anthropic-version": "2023-06-01"}
        url = "http://relay/v1/messages"
        json_direct = series(lambda: timed(direct, "/v1/messages", BODY, {}), n)
        json_relay = series(lambda: timed(via_json, url, BODY, auth), n)
        sse_direct = series(lambda: timed(direct, "/sse/v1/messages", STREAM_BODY, {}), n)
        sse_relay = series(lambda: timed(via_sse, url, STREAM_BODY, auth), n)

        stop.set()
        usages = out.get(timeout=60)
        relay.join()
        upstream.join()
    print(f"{n} calls each, median ms                 direct   relay    added")
    print(line("non-streamed call (JSON), total", json_direct[1], json_relay[1]))
    print(line(f"streamed call ({EVENTS} SSE events), TTFB", sse_direct[0], sse_relay[0]))
    print(line("streamed call, to the last byte", sse_direct[1], sse_relay[1]))
    for name, usage in zip(("json", "sse"), usages, strict=True):
        print(f"{name} relay logged {usage['calls']} calls, ${usage['cost_usd']}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
