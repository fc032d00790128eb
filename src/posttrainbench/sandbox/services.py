"""The harness-side services of one agent launch: the API relay, the egress proxy and the
scoring service of the agent's own evaluations (evaluate/scoring_service.py).

Each listens on a unix socket in a short private temporary folder (socket paths must stay under
108 bytes), bridged into the sandbox as a loopback port. The agent's environment gets the relay's
base URL and a per-launch dummy token (never a real key), the proxy variables, and the scoring
service's URL and per-launch token (official benchmarks, whose targets stay here). What the
services saw is written to the run directory (`agent/llm_calls.jsonl`, `egress.jsonl`) as it
happens and summarised into run.json when the launch ends.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from posttrainbench.errors import InfrastructureError
from posttrainbench.records import AgentOutcome, ApiUsage, RunSpec, Usage
from posttrainbench.results.layout import RunPaths
from posttrainbench.sandbox.base import Bridge, Sandbox

if TYPE_CHECKING:
    from posttrainbench.evaluate.scoring_service import ScoringService
    from posttrainbench.sandbox.egress import EgressProxy
    from posttrainbench.sandbox.relay import Relay

log = logging.getLogger(__name__)


@dataclass
class Services:
    env: dict[str, str] = field(default_factory=dict)
    bridges: list[Bridge] = field(default_factory=list)
    relay: Relay | None = None
    proxy: EgressProxy | None = None
    scoring: ScoringService | None = None
    relay_url: str | None = None  # the relay as the agent reaches it (no /v1)
    token: str | None = None  # the launch's dummy token: redacted wherever it shows up


def _proxy_env(port: int) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    return {
        "HTTP_PROXY": url, "HTTPS_PROXY": url, "http_proxy": url, "https_proxy": url,
        "ALL_PROXY": url, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    }  # fmt: skip


@contextlib.contextmanager
def start(
    paths: RunPaths, spec: RunSpec, sandbox: Sandbox, outcome: AgentOutcome | None = None
) -> Iterator[Services]:
    svc = Services()
    tmp = Path(tempfile.mkdtemp(prefix="ptb-"))
    try:
        if spec.api_provider is not None:
            from posttrainbench.sandbox.relay import Relay, agent_env

            token = "ptb-" + secrets.token_hex(16)
            paths.llm_calls.parent.mkdir(parents=True, exist_ok=True)
            svc.relay = Relay(
                provider=spec.api_provider,
                socket_path=tmp / "relay.sock",
                log_path=paths.llm_calls,
                dummy_token=token,
                budget_usd=remaining_budget(spec, outcome),
                allow_provider_tools=spec.allow_provider_tools,
            )
            svc.relay.start()
            port = sandbox.bridge_port("relay")
            svc.bridges.append(Bridge("relay", tmp / "relay.sock", port))
            svc.relay_url, svc.token = f"http://127.0.0.1:{port}", token
            svc.env |= agent_env(spec.api_provider, svc.relay_url, token)
        if spec.network in ("allowlist", "open") and sandbox.capabilities.network_policy:
            from posttrainbench.sandbox.egress import EgressPolicy, EgressProxy

            svc.proxy = EgressProxy(
                EgressPolicy(mode=spec.network, allow_hosts=spec.allow_hosts),
                socket_path=tmp / "egress.sock",
                log_path=paths.egress,
            )
            svc.proxy.start()
            port = sandbox.bridge_port("egress")
            svc.bridges.append(Bridge("egress", tmp / "egress.sock", port))
            svc.env |= _proxy_env(port)
        if _scored_harness_side(spec):
            svc.scoring = _start_scoring(paths, spec, sandbox, outcome, tmp, svc)
        yield svc
    finally:
        for service in (svc.relay, svc.proxy, svc.scoring):
            if service is not None:
                service.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _scored_harness_side(spec: RunSpec) -> bool:
    """Official benchmarks: the workspace holds test inputs only, the service scores them.
    Without socat (the bridge) the agent's evaluate.py says that no scoring service is there."""
    from posttrainbench.catalog import BENCHMARKS

    if BENCHMARKS.get(spec.benchmark).public_data is not None:
        return False
    if shutil.which("socat") is None:
        log.warning("socat is not installed: the agent's evaluate.py cannot reach the scorer")
        return False
    return True


def _start_scoring(
    paths: RunPaths,
    spec: RunSpec,
    sandbox: Sandbox,
    outcome: AgentOutcome | None,
    tmp: Path,
    svc: Services,
) -> ScoringService:
    from posttrainbench.evaluate.scoring_service import TOKEN_VAR, URL_VAR, ScoringService

    spent = sum((e.judge_cost_usd or 0.0) for e in (outcome.evaluations if outcome else []))
    token = "ptb-score-" + secrets.token_hex(16)
    service = ScoringService(
        benchmark=spec.benchmark,
        socket_path=tmp / "scoring.sock",
        token=token,
        work_dir=paths.agent_dir / "scoring" / f"launch-{len(outcome.attempts) if outcome else 0}",
        log_path=paths.agent_dir / "evaluations.jsonl",
        seed=spec.seed,
        suite=spec.suite,
        judge_model=spec.judge_model,
        judge_base_url=spec.judge_base_url,
        judge_budget_usd=spec.agent_judge_budget_usd,
        judge_spent_usd=spent,
        base_model=spec.base_model,
    )
    service.start()
    port = sandbox.bridge_port("scoring")
    svc.bridges.append(Bridge("scoring", tmp / "scoring.sock", port))
    svc.env |= {URL_VAR: f"http://127.0.0.1:{port}", TOKEN_VAR: token}
    return service


def check_relay(spec: RunSpec) -> None:
    """Before the budget: the relay starts with the harness's key and answers on its socket, and
    the provider's host takes a connection. Raises ConfigError / InfrastructureError."""
    if spec.api_provider is None:
        return
    from posttrainbench.sandbox.relay import Relay

    tmp = Path(tempfile.mkdtemp(prefix="ptb-"))
    try:
        relay = Relay(
            provider=spec.api_provider,
            socket_path=tmp / "relay.sock",
            log_path=tmp / "calls.jsonl",
            dummy_token="ptb-" + secrets.token_hex(16),
        )
        with relay:
            status = _unix_get(tmp / "relay.sock", "/ptb-preflight")
            if status is None:
                raise InfrastructureError(
                    "the API relay did not answer on its socket", "check /tmp is writable"
                )
            _reachable(relay.base_url, relay.proxy)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _unix_get(path: Path, target: str) -> int | None:
    with contextlib.suppress(OSError, ValueError), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n".encode())
        head = sock.recv(64).split(b" ")
        return int(head[1])
    return None


def _reachable(base_url: str, proxy: str | None) -> None:
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    if proxy:  # the harness reaches the provider through a proxy: check that one
        pp = urlsplit(proxy)
        host, port = pp.hostname or "", pp.port or 80
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as exc:
        raise InfrastructureError(
            f"the API provider at {host}:{port} cannot be reached: {exc}",
            "check the network or the provider's base URL; the run can be retried",
        ) from exc


SUMMED = (*Usage.model_fields, "calls", "failed_calls", "refused_calls", "unpriced_calls",
          "priced_at_max_calls", "provider_tool_calls", "cost_usd")  # fmt: skip


def _add(before: ApiUsage | None, launch: ApiUsage) -> ApiUsage:
    if before is None:
        return launch
    summed = {name: getattr(before, name) + getattr(launch, name) for name in SUMMED}
    return launch.model_copy(update=summed | {"budget_usd": before.budget_usd})


def remaining_budget(spec: RunSpec, outcome: AgentOutcome | None) -> Decimal | None:
    """What a relaunched agent may still spend: the run's budget less what earlier launches did."""
    if spec.api_budget_usd is None:
        return None
    spent = outcome.api_usage.cost_usd if outcome and outcome.api_usage else Decimal(0)
    return max(Decimal(str(spec.api_budget_usd)) - spent, Decimal("0.000001"))


def record(svc: Services, paths: RunPaths, outcome: AgentOutcome) -> None:
    """The run's totals so far, over every launch: read back from the logs."""
    if svc.relay is not None:
        outcome.api_usage = _add(outcome.api_usage, svc.relay.usage())
    if svc.scoring is not None:
        outcome.evaluations.extend(svc.scoring.evaluations)
        svc.scoring.evaluations = []  # recorded once, however often record() runs
    if svc.proxy is not None:
        from posttrainbench.sandbox.egress import read_events, summarize

        outcome.egress = summarize(read_events(paths.egress))
