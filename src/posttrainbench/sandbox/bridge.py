"""Bridges from 127.0.0.1:PORT to a harness-side unix socket, started in front of the agent.

The agent's network namespace has only loopback; its one way out is a unix socket the harness
listens on (the API relay, the egress proxy), bind-mounted into the sandbox. `wrap` prefixes the
agent's command with a small shell script that starts one `socat` per bridge, waits until each
port listens (read from /proc/net/tcp, without connecting), runs the agent's command and stops
the bridges when it ends.
"""

from __future__ import annotations

import shlex
import shutil

from posttrainbench.errors import MissingDependencyError

WAIT_S = 5


def check_socat() -> None:
    if shutil.which("socat") is None:
        raise MissingDependencyError(
            "socat is not installed (it bridges the API relay and the egress proxy into the "
            "sandbox)",
            "apt-get install socat",
        )


def wrap(argv: list[str], bridges: list[tuple[int, str]]) -> list[str]:
    """`argv` preceded by bridges (guest port, guest socket path); unchanged without bridges."""
    if not bridges:
        return argv
    lines = []
    for port, socket in bridges:
        listen = f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"
        target = f"UNIX-CONNECT:{shlex.quote(socket)}"
        lines.append(f'socat {listen} {target} </dev/null >/dev/null 2>&1 & pids="$pids $!"')
    for port, _ in bridges:
        hex_port = f"{port:04X}"
        lines.append(
            f"i=0; until grep -q ':{hex_port} 00000000:0000 0A' /proc/net/tcp 2>/dev/null; do "
            f"i=$((i+1)); [ $i -gt {WAIT_S * 20} ] && break; sleep 0.05; done"
        )
    # Not `exec`: the bridges must end with the agent, not outlive it in the sandbox.
    lines.append('"$@"; rc=$?; kill $pids 2>/dev/null; exit $rc')
    return ["/bin/sh", "-c", "\n".join(lines), "ptb-agent", *argv]
