"""What the metrics-server gives the HPA on a cluster: each replica's CPU and memory, from /proc.

A replica is its process and every process below it (a container's cgroup holds them all): its
CPU is the rate of their user + system time (/proc/PID/stat fields 14 and 15, in clock ticks)
between two samples, in millicores (1000 = one core busy); its memory is their resident set
(field 24, in pages), in bytes, as the working set the kubelet reports is close to it.

As with the metrics-server, a replica has no CPU value until it has been sampled twice (the HPA
counts it missing), and its sample is marked not ready unless the replica was ready for the
whole sample window (the HPA's rule for CPU of starting pods). Requests come from the container's
`resources`: `requests`, else `limits` (Kubernetes defaults a request to the limit); a CPU request
of neither is one core on the plane (a cluster's HPA would refuse to compute utilization without
one), memory has no default, so a memory Utilization target needs a request or a limit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from knserve.knative.apiserver.quantity import parse_quantity
from knserve.knative.autoscaler.hpa_replicas import PodSample

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
ONE_CORE = 1000.0  # millicores: the plane's CPU request for a container that names none


def requests(container: Mapping[str, Any]) -> tuple[float, float | None]:
    """(CPU millicores, memory bytes or None) a replica of `container` requests."""
    resources = container.get("resources") or {}
    wanted = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    cpu = parse_quantity(wanted["cpu"]) * 1000 if "cpu" in wanted else ONE_CORE
    memory = parse_quantity(wanted["memory"]) if "memory" in wanted else None
    return cpu, memory


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(parent pid, CPU ticks, RSS pages) of a live process; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[21])


def _children(pid: int) -> list[int] | None:
    """The pids of a process's children (from every thread's /proc children list); [] when it
    is gone, None where the kernel has no such lists (then only a scan of /proc finds them)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(child) for child in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}/task/{tid}"):
                continue  # the thread ended meanwhile
            return None
        except OSError:
            continue
    return found


def process_tree_usage(roots: Sequence[int]) -> dict[int, tuple[int, int]]:
    """root pid -> (CPU ticks, RSS bytes) of it and its descendants; gone roots are left out.

    Each root's tree is walked down through /proc's children lists, so a sample costs the
    replicas' own processes, not every process on the machine (sampled every second for every
    revision, a scan of /proc grew with revisions x processes)."""
    out: dict[int, tuple[int, int]] = {}
    for root in dict.fromkeys(roots):
        ticks = rss = 0
        pending, seen, alive = [root], set(), False
        while pending:
            pid = pending.pop()
            stat = _stat(pid) if pid not in seen else None
            if stat is None:
                continue
            seen.add(pid)
            alive = alive or pid == root
            ticks, rss = ticks + stat[1], rss + stat[2] * PAGE_SIZE
            children = _children(pid)
            if children is None:
                return _scanned_tree_usage(roots)
            pending.extend(children)
        if alive:
            out[root] = (ticks, rss)
    return out


def _scanned_tree_usage(roots: Sequence[int]) -> dict[int, tuple[int, int]]:
    """process_tree_usage by a scan of every process in /proc (kernels without children lists)."""
    parents: dict[int, int] = {}
    usage: dict[int, tuple[int, int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[0]
            usage[int(entry.name)] = (stat[1], stat[2])
    out: dict[int, tuple[int, int]] = {}
    wanted = set(roots)
    for pid, (ticks, rss) in usage.items():
        root, seen = pid, 0
        while root not in wanted and root in parents and seen < 64:
            root, seen = parents[root], seen + 1  # walk up to a replica's root, if any
        if root in wanted and root in usage:
            total = out.get(root, (0, 0))
            out[root] = (total[0] + ticks, total[1] + rss * PAGE_SIZE)
    return out


@dataclass
class _Last:
    time: float
    ticks: int
    ready: bool


class ResourceSampler:
    """One revision's replicas sampled over time (module docstring)."""

    def __init__(self) -> None:
        self._last: dict[int, _Last] = {}

    def sample(
        self,
        replicas: Sequence[tuple[int | None, bool]],
        container: Mapping[str, Any],
        now: float,
    ) -> dict[str, list[PodSample]]:
        """{"cpu": samples in millicores, "memory": samples in bytes}, one per (pid or None,
        ready) replica, in the order given."""
        cpu_request, memory_request = requests(container)
        usage = process_tree_usage([pid for pid, _ in replicas if pid is not None])
        cpu: list[PodSample] = []
        memory: list[PodSample] = []
        seen: dict[int, _Last] = {}
        for pid, ready in replicas:
            if pid is None or pid not in usage:  # not running (yet): a Pending pod
                cpu.append(PodSample(None, cpu_request, started=False, ready=False))
                memory.append(PodSample(None, memory_request, started=False, ready=False))
                continue
            ticks, rss = usage[pid]
            last = self._last.get(pid)
            seen[pid] = _Last(now, ticks, ready)
            memory.append(PodSample(float(rss), memory_request, ready=ready))
            if last is None or now <= last.time:
                cpu.append(PodSample(None, cpu_request, ready=ready))  # one sample: no rate yet
                continue
            millicores = (ticks - last.ticks) / CLOCK_TICKS / (now - last.time) * 1000
            cpu.append(PodSample(max(0.0, millicores), cpu_request, ready=ready and last.ready))
        self._last = seen
        return {"cpu": cpu, "memory": memory}
