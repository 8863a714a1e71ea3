"""A replica's readiness and liveness probes after it is ready, as the kubelet runs them.

A container's `readinessProbe` and `livenessProbe` (Kubernetes' Probe: `httpGet`, `tcpSocket`,
`periodSeconds` 10, `timeoutSeconds` 1, `failureThreshold` 3, `successThreshold` 1) are probed every
`periodSeconds` once the replica is ready; each probe fails on a refused or timed-out connection
or, for `httpGet`, a status outside 200-399. Both are probed on the replica's serving port, as
Knative's queue-proxy probes the user container (the port map sends the declared port there).

- `failureThreshold` consecutive readiness failures: on a cluster the pod only leaves the
  Service's endpoints and the kubelet waits; on the plane nothing else would ever act, so the
  supervisor takes the replica out of the endpoints and replaces it (a new process, a new port).
- `failureThreshold` consecutive liveness failures: the kubelet restarts the container; so does
  the supervisor.

Without a `readinessProbe` Knative's default is a TCP probe of the port; without a
`livenessProbe` there is none. `Probe` reads the settings (pure); `probe_once` does one probe.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Probe:
    """One probe's settings, with Kubernetes' defaults (times in seconds)."""

    kind: str  # "readiness" or "liveness"
    path: str | None  # httpGet's path; None for a TCP probe
    period: float = 10.0
    timeout: float = 1.0
    failure_threshold: int = 3

    @classmethod
    def of(cls, container: dict[str, Any], kind: str) -> Probe | None:
        """The container's `readinessProbe` (TCP by default) or `livenessProbe` (None if absent)."""
        spec = container.get(f"{kind}Probe")
        if not spec:
            return cls(kind, None) if kind == "readiness" else None
        http_get = spec.get("httpGet")
        return cls(
            kind,
            (http_get.get("path") or "/") if http_get else None,
            float(spec.get("periodSeconds") or 10),
            float(spec.get("timeoutSeconds") or 1),
            int(spec.get("failureThreshold") or 3),
        )

    def failure(self) -> str:
        """Why the replica was replaced, once this probe reached its failureThreshold."""
        return (
            f"{self.kind} probe failed {self.failure_threshold} times in a row (failureThreshold "
            f"{self.failure_threshold}, periodSeconds {self.period:g}) after the replica was "
            "ready; it was replaced"
        )


async def probe_once(client: httpx.AsyncClient, host: str, port: int, probe: Probe) -> bool:
    """Whether the replica on host:port passes `probe` now."""
    try:
        if probe.path is not None:
            url = f"http://{host}:{port}{probe.path}"
            response = await client.get(url, timeout=probe.timeout)
            return 200 <= response.status_code < 400
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), probe.timeout)
        writer.close()
        return True
    except (OSError, TimeoutError, httpx.HTTPError):
        return False


async def until_failing(host: str, port: int, probes: list[Probe]) -> Probe:
    """Probe every `period` until one of `probes` fails `failure_threshold` times in a row;
    return it. Cancelled when the replica stops or exits."""
    failures = {probe.kind: 0 for probe in probes}
    next_at = {probe.kind: 0.0 for probe in probes}
    loop = asyncio.get_running_loop()
    start = loop.time()
    for probe in probes:
        next_at[probe.kind] = start + probe.period
    # Probes are plain HTTP on loopback: a client that loads no CA bundle and reads no proxy
    # settings costs ~0.5 ms to make, not the ~80 ms (on the plane's loop) of a default one.
    async with httpx.AsyncClient(verify=False, trust_env=False) as client:
        while True:
            due = min(next_at.values())
            # The kubelet's schedule: probing a process we do not control has no event to await.
            await asyncio.sleep(max(0.0, due - loop.time()))
            for probe in probes:
                if next_at[probe.kind] > loop.time():
                    continue
                next_at[probe.kind] += probe.period
                if await probe_once(client, host, port, probe):
                    failures[probe.kind] = 0
                    continue
                failures[probe.kind] += 1
                if failures[probe.kind] >= probe.failure_threshold:
                    return probe
