"""The `host` backend: no isolation at all; the agent runs as this user on this machine.

Threat model: none. The agent can read the held-out data, the harness's code, your files and the
network, and write wherever you can. What the harness still does: an allow-listed environment (no
credentials, no harness cache path), a HOME of its own under the run's agent/ folder, its own
process group, the deadline, and a sweep of every process it left behind (the harness is a child
subreaper, and each agent process carries the attempt's token in its environment). Records the
score depends on are re-derived or fixed before the agent starts. Use it for the embedded demo and
for trusted agents; use an isolating backend for anything that could reward-hack.
"""

from __future__ import annotations

import logging
import subprocess

from posttrainbench.sandbox.base import Capabilities, LaunchRequest, Sandbox

log = logging.getLogger(__name__)


class HostSandbox(Sandbox):
    name = "host"
    capabilities = Capabilities(isolation=False, network_policy=False, gpu=True)

    def launch(self, request: LaunchRequest) -> subprocess.Popen[bytes]:
        log.warning("sandbox 'host' gives the agent no isolation (it can read everything you can)")
        return subprocess.Popen(
            request.argv,
            cwd=request.workdir,
            env=request.env,
            stdin=subprocess.DEVNULL,
            stdout=request.stdout,
            stderr=request.stderr,
            start_new_session=True,
        )
