"""Which hosts the agent may reach: the run's network mode, the default allowlist, the run's extra
`--allow-host` entries, and the check that keeps loopback, link-local and private addresses out.

An entry is a host name (`pypi.org`), a wildcard (`*.hf.co`: every subdomain, never `hf.co` itself
nor `evilhf.co`) or an IP address (`10.0.0.5`, `[::1]`), optionally with `:port`. Without a port it
admits 443 and 80; with one, that port only. Names compare case-insensitively.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import Field, field_validator

from posttrainbench.errors import ConfigError
from posttrainbench.records import NetworkPolicy, Record

DEFAULT_ALLOW_HOSTS: tuple[str, ...] = (
    # Hugging Face hub and the LFS/xet storage and CDNs it redirects to (cdn-lfs.hf.co,
    # cdn-lfs-us-1.hf.co, cas-bridge.xethub.hf.co, transfer.xethub.hf.co, *.aws.cdn.hf.co, ...;
    # https://huggingface.co/.well-known/meta.json lists them).
    "huggingface.co",
    "*.huggingface.co",
    "hf.co",
    "*.hf.co",
    # PyPI: the index and the file host.
    "pypi.org",
    "files.pythonhosted.org",
    # GitHub: site and git, api, codeload (archives), raw, objects and release-assets downloads.
    "github.com",
    "*.github.com",
    "*.githubusercontent.com",
)
DEFAULT_PORTS = frozenset({80, 443})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]  # (host, port) → IP address strings

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_ALLOW_HOST_HINT = (
    "give a host name, *.domain or IP address, optionally with :port, e.g. example.org:8443"
)


@dataclass(frozen=True)
class AllowEntry:
    host: str  # lower-case name, the domain of a wildcard, or a canonical IP address
    port: int | None
    wildcard: bool = False

    def admits_port(self, port: int) -> bool:
        return port == self.port if self.port is not None else port in DEFAULT_PORTS

    def matches_host(self, host: str) -> bool:
        """`host` is normalised (see `normalize_host`)."""
        if self.wildcard:
            return host.endswith("." + self.host) and ip_literal(host) is None
        return host == self.host

    def matches(self, host: str, port: int) -> bool:
        return self.admits_port(port) and self.matches_host(host)

    def __str__(self) -> str:
        host = f"*.{self.host}" if self.wildcard else self.host
        if ":" in host:
            host = f"[{host}]"
        return host if self.port is None else f"{host}:{self.port}"


def ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def normalize_host(host: str) -> str | None:
    """A request's host as the policy compares it (lower case, no brackets, no trailing dot), or
    None when it is no valid host name or IP address."""
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        ip = ip_literal(h[1:-1])
        return str(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if (ip := ip_literal(h)) is not None:
        return str(ip)
    h = h.removesuffix(".")
    if not h or len(h) > 253 or not all(_LABEL.match(label) for label in h.split(".")):
        return None
    return h


@functools.lru_cache(maxsize=4096)
def parse_entry(text: str) -> AllowEntry:
    """One allowlist entry; ValueError with a one-line reason when malformed."""
    s = text.strip()
    if not s:
        raise ValueError("an allowed host is empty")
    if any(c.isspace() for c in s):
        raise ValueError(f"allowed host {text!r} contains spaces")
    if "://" in s:
        raise ValueError(f"allowed host {text!r} has a scheme; give the bare host")
    if any(c in s for c in "/?#@"):
        raise ValueError(f"allowed host {text!r} is a URL; give the bare host")
    host, port = s, None
    if s.startswith("["):
        end = s.find("]")
        host, rest = s[: end + 1], s[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ValueError(f"allowed host {text!r} is a malformed IPv6 address")
        port = rest[1:] if rest else None
    elif s.count(":") == 1:
        host, port = s.split(":")
    port_num = None
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"allowed host {text!r} has a port that is not a number in 1-65535")
        port_num = int(port)
    wildcard = host.startswith("*.")
    name = normalize_host(host[2:] if wildcard else host)
    if name is None or (wildcard and ip_literal(name) is not None):
        raise ValueError(f"allowed host {text!r} is not a valid host name, *.domain or address")
    return AllowEntry(name, port_num, wildcard)


def parse_allow_host(text: str) -> str:
    """Validate one `--allow-host` value; returns it normalised (e.g. `*.example.org:8443`)."""
    try:
        return str(parse_entry(text))
    except ValueError as e:
        raise ConfigError(str(e), hint=_ALLOW_HOST_HINT) from None


def is_internal(address: IPAddress) -> bool:
    """Loopback, private, link-local (cloud metadata), unspecified, shared, reserved,
    multicast: anything but a public unicast address, also inside IPv6 (::ffff:, 64:ff9b::)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_internal(address.ipv4_mapped)
        if address in _NAT64:
            return is_internal(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return not address.is_global or address.is_multicast


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order, without duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class EgressPolicy(Record):
    """The run's network policy. `allow_hosts` are the run's own entries (`--allow-host`); in mode
    `allowlist` they add to DEFAULT_ALLOW_HOSTS. Only they can open an internal address."""

    mode: NetworkPolicy = "allowlist"
    allow_hosts: list[str] = Field(
        default_factory=list, description="Extra entries, normalised: host, *.domain or IP, :port."
    )

    @field_validator("allow_hosts")
    @classmethod
    def _normalise(cls, hosts: list[str]) -> list[str]:
        return list(dict.fromkeys(str(parse_entry(h)) for h in hosts))

    def entries(self) -> tuple[list[AllowEntry], list[AllowEntry]]:
        """(default entries in force, the run's own entries)."""
        defaults = [parse_entry(h) for h in DEFAULT_ALLOW_HOSTS] if self.mode == "allowlist" else []
        return defaults, [parse_entry(h) for h in self.allow_hosts]

    def check_name(self, host: str, port: int) -> str | None:
        """Why (host, port) is refused by name, or None if the name and port are admitted."""
        host = normalize_host(host) or host
        if self.mode == "none":
            return "the run has no network access"
        defaults, own = self.entries()
        if self.mode == "open" or any(e.matches(host, port) for e in (*defaults, *own)):
            return None
        if any(e.matches_host(host) for e in (*defaults, *own)):
            return f"port {port} is not allowed for {host}"
        return f"{host} is not in the allowlist"

    def check_addresses(self, host: str, port: int, addresses: list[IPAddress]) -> str | None:
        """Why connecting to `addresses` (what `host` resolved to) is refused, or None."""
        host = normalize_host(host) or host
        own = [e for e in self.entries()[1] if not e.wildcard]
        if any(e.host == host and e.admits_port(port) for e in own):
            return None
        for address in addresses:
            if is_internal(address) and not any(
                e.host == str(address) and e.admits_port(port) for e in own
            ):
                return f"{host} resolves to {address}, a loopback, private or link-local address"
        return None
