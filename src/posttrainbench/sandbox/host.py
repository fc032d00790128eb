"""The `host` backend: no isolation at all; the agent runs as this user on this machine.

Threat model: none. The agent can read the held-out data, the harness's code, your files and the
network. It still runs in its own process group with credentials scrubbed from its environment,
and the harness still enforces the deadline. Use it for the embedded demo and for trusted agents;
use an isolating backend for anything that could reward-hack.
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
        request.stdout.parent.mkdir(parents=True, exist_ok=True)
        with request.stdout.open("ab") as out, request.stderr.open("ab") as err:
            return subprocess.Popen(
                request.argv,
                cwd=request.workdir,
                env=request.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
