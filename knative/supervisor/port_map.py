"""Which ports a replica's fixed binds map to on the local plane (pure).

In a pod each container has its own network: a server may bind any fixed port its args or env
name, and the pod's port is the container's declared one (Knative: the first
`ports[].containerPort`, else 8080). On the local plane every replica shares loopback with the
others and with the plane itself (gateway 8080, API 8081, broker 8082), so a replica's binds are
mapped (`PortMap.target`):

- the declared port becomes the replica's own port, the one in its `$PORT`;
- port 0 and ports in the kernel's ephemeral range stay as they are: those came from the kernel
  (the plane's `$PORT` itself, or a free port the process found by binding port 0), so no other
  replica holds them, and a process that picked one for a child must find the child on it;
- any other fixed port (KServe's gRPC 8081, MLServer's 9000 and 8082) becomes a free one;
- and every address becomes loopback (knserve.knative.supervisor.port_map_shim.c does that part).

A replica learns the mapping from `KNSERVE_PORT_MAP` (`PortMap.env_value`), which the C shim
(LD_PRELOAD, for processes knserve does not control) and knserve's runtime (for its own
`--http_port`) read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENV_NAME = "KNSERVE_PORT_MAP"
# "DOMAIN=PORT": names under the route domain resolve to the gateway on 127.0.0.1:PORT, and a
# connect to loopback port 80 reaches it (the shim's part of cluster DNS and a Service's port 80).
GATEWAY_ENV = "KNSERVE_GATEWAY"
# Knative's containerPort when a container declares none.
DEFAULT_CONTAINER_PORT = 8080
# Linux's default net.ipv4.ip_local_port_range, for when /proc cannot be read.
DEFAULT_EPHEMERAL = (32768, 60999)


class PortError(ValueError):
    """A container's `ports` cannot be honoured; the message says what to fix."""


def declared_port(container: Mapping[str, Any]) -> int:
    """The port the container serves on, as Knative takes it: the first `ports[].containerPort`,
    else 8080."""
    ports = container.get("ports") or []
    if not ports:
        return DEFAULT_CONTAINER_PORT
    first = ports[0]
    number = first.get("containerPort") if isinstance(first, Mapping) else None
    if number in (None, 0):
        return DEFAULT_CONTAINER_PORT
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
        raise PortError(f"ports[0].containerPort is {number!r}; give a port number from 1 to 65535")
    return number


def ephemeral_range(text: str | None) -> tuple[int, int]:
    """The kernel's ephemeral port range from the text of
    /proc/sys/net/ipv4/ip_local_port_range ("32768\\t60999"); Linux's default when unreadable."""
    try:
        low, high = (int(part) for part in (text or "").split())
    except ValueError:
        return DEFAULT_EPHEMERAL
    return (low, high) if 0 < low <= high < 65536 else DEFAULT_EPHEMERAL


@dataclass(frozen=True)
class PortMap:
    """A replica's port mapping: its `declared` port is its `real` one; ports in `keep` stay."""

    declared: int
    real: int
    keep: tuple[int, int] = DEFAULT_EPHEMERAL

    @classmethod
    def for_container(
        cls, container: Mapping[str, Any], real: int, keep: tuple[int, int] = DEFAULT_EPHEMERAL
    ) -> PortMap:
        return cls(declared_port(container), real, keep)

    def target(self, port: int) -> int:
        """The port a bind to `port` gets (0: a free port the kernel picks)."""
        if port == self.declared:
            return self.real
        if port == 0 or self.keep[0] <= port <= self.keep[1]:
            return port
        return 0

    def env_value(self) -> str:
        """`KNSERVE_PORT_MAP`'s value: `DECLARED=REAL,keep=LOW-HIGH`."""
        return f"{self.declared}={self.real},keep={self.keep[0]}-{self.keep[1]}"
