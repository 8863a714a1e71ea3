"""How the plane's cost grows with the work it holds: 1 -> 20 -> 200 Knative Services.

    python -m benchmarks scale [--quick] [--steps 20,200] [--idle 10] [--profile]

Two `knserve up` planes (Knative's default autoscaler settings) run side by side: a reference
plane that holds one Service, and a plane that grows step by step. At each step the growing plane
holds N Services, a quarter of them with one replica (min-scale = max-scale = 1: at 200, 50
replicas) and the rest scaled to zero (initial-scale 0), and 10 x N objects in the store (at 200:
2,000; the Services' Configurations, Routes and Revisions, then Triggers on Brokers, 100 per
Broker). Both planes are then measured in the same moments (interleaved, or over the same window),
so the ratio N : 1 holds however busy the machine is:

- idle CPU: each plane process's CPU over `--idle` seconds with no traffic, % of one core
  (replicas are other processes and not counted); RSS of each plane process;
- list: p50 of GET all Services, GET all Revisions, and one Service's Revisions by labelSelector;
- watch: p50 from a PATCH's response to its MODIFIED event on an open watch of Services;
- gateway: p50 of keep-alive GETs at concurrency 1 to one replica directly and through the
  gateway, in interleaved blocks, and the p50 the gateway adds;
- create -> Ready: a new one-replica Service from POST until Ready=True on a watch (3 times on
  each plane, alternating; each is deleted again).

`--profile` samples the growing plane with py-spy (when on PATH) while it idles at the last step
and prints where its time goes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

from benchmarks._scale_plane import SERVING, ScalePlane, is_ready, service
from benchmarks._scale_profile import profiling

ROUNDS = 3
Row = dict[str, float]


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


def idle_cpu(planes: list[ScalePlane], seconds: float) -> list[float]:
    """Percent of one core each plane used over the same window in which nothing happened."""
    before, started = [p.cpu_seconds() for p in planes], time.monotonic()
    time.sleep(seconds)  # the idle window is the measurement itself
    elapsed = time.monotonic() - started
    return [100 * (p.cpu_seconds() - b) / elapsed for p, b in zip(planes, before, strict=True)]


def list_p50(planes: list[ScalePlane], path: str, times: int = 15) -> list[float]:
    samples: list[list[float]] = [[] for _ in planes]
    for _ in range(times):
        for plane, out in zip(planes, samples, strict=True):
            out.append(plane.api.request("GET", path)[2])
    return [p50(s) for s in samples]


def watch_p50(plane: ScalePlane, name: str, times: int = 15) -> float:
    """From a merge-patch's response to the MODIFIED event carrying it, on one open watch."""
    rv = plane.api.must("GET", f"{SERVING}/services")["metadata"]["resourceVersion"]
    conn = http.client.HTTPConnection("127.0.0.1", plane.api_port, timeout=60)
    conn.request("GET", f"{SERVING}/services?watch=true&resourceVersion={rv}")
    stream = conn.getresponse()
    samples = []
    try:
        for i in range(times):
            mark = f"w{i}-{uuid.uuid4().hex[:6]}"
            patch = {"metadata": {"labels": {"scale.knserve.dev/mark": mark}}}
            plane.api.must("PATCH", f"{SERVING}/services/{name}", patch)
            sent = time.perf_counter()
            while True:
                event = json.loads(stream.readline())
                labels = event["object"]["metadata"].get("labels") or {}
                if labels.get("scale.knserve.dev/mark") == mark:
                    samples.append(time.perf_counter() - sent)
                    break
    finally:
        conn.close()
    return p50(samples)


def create_to_ready(plane: ScalePlane, name: str) -> float:
    """Seconds from POST of a one-replica Service to its Ready event; the Service is deleted."""
    rv = plane.api.must("GET", f"{SERVING}/services")["metadata"]["resourceVersion"]
    conn = http.client.HTTPConnection("127.0.0.1", plane.api_port, timeout=120)
    conn.request("GET", f"{SERVING}/services?watch=true&resourceVersion={rv}")
    stream = conn.getresponse()
    started = time.perf_counter()
    plane.api.must("POST", f"{SERVING}/services", service(name, plane.root, warm=True))
    while True:
        obj = json.loads(stream.readline())["object"]
        if obj["metadata"]["name"] == name and is_ready(obj):
            elapsed = time.perf_counter() - started
            break
    conn.close()
    plane.api.must("DELETE", f"{SERVING}/services/{name}")
    return elapsed


def _get_timed(conn: http.client.HTTPConnection, host: str | None) -> float:
    started = time.perf_counter()
    conn.request("GET", "/", headers={"Host": host} if host else {})
    conn.getresponse().read()
    return time.perf_counter() - started


def gateway_p50(planes: list[ScalePlane], name: str, requests: int) -> list[tuple[float, float]]:
    """Per plane, (direct p50, through-gateway p50) in ms, all in interleaved blocks of 100."""
    host = f"{name}.default.localhost"
    pairs = []
    for plane in planes:
        port = plane.replica_port(f"{name}-00001")
        direct = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        gateway = http.client.HTTPConnection("127.0.0.1", plane.port, timeout=30)
        for _ in range(50):  # warm both connections and the gateway's upstream pool
            _get_timed(direct, None), _get_timed(gateway, host)
        pairs.append((direct, gateway, [], []))
    for _ in range(max(1, requests // 100)):
        for direct, gateway, d, g in pairs:
            d += [_get_timed(direct, None) for _ in range(100)]
            g += [_get_timed(gateway, host) for _ in range(100)]
    for direct, gateway, _, _ in pairs:
        direct.close()
        gateway.close()
    return [(p50(d), p50(g)) for _, _, d, g in pairs]


ROWS = [
    ("objects in the store", "objects", "{:.0f}"),
    ("replica processes", "replicas", "{:.0f}"),
    ("plane idle CPU (% of one core)", "idle_cpu", "{:.2f}"),
    ("plane RSS (MiB)", "rss", "{:.0f}"),
    ("list Services p50 (ms)", "list_services", "{:.2f}"),
    ("list Revisions p50 (ms)", "list_revisions", "{:.2f}"),
    ("list one Service's Revisions p50 (ms)", "list_selected", "{:.2f}"),
    ("watch event after PATCH p50 (ms)", "watch", "{:.2f}"),
    ("replica direct p50 (ms)", "direct", "{:.3f}"),
    ("through the gateway p50 (ms)", "through", "{:.3f}"),
    ("gateway added p50 (ms)", "added", "{:.3f}"),
    ("create Service -> Ready p50 (ms)", "ready", "{:.0f}"),
]


def measure(
    ref: ScalePlane, plane: ScalePlane, idle: float, requests: int, profile: str | None
) -> tuple[Row, Row]:
    """The reference plane's row and the growing plane's, measured in the same moments."""
    both = [ref, plane]
    rows: list[Row] = [{}, {}]
    for row, p in zip(rows, both, strict=True):
        row["objects"], row["replicas"] = p.object_count(), (len(p.services) + 3) // 4
    time.sleep(2)  # let the last reconciles and the replicas' first probes pass
    with profiling(plane.proc.pid, idle, profile) if profile else nullcontext():
        cpu = idle_cpu(both, idle)
    selector = "labelSelector=serving.knative.dev/service%3Dsvc-0000"
    lists = [
        list_p50(both, f"{SERVING}/services"),
        list_p50(both, f"{SERVING}/revisions"),
        list_p50(both, f"{SERVING}/revisions?{selector}"),
    ]
    for i, row in enumerate(rows):
        row["idle_cpu"], row["rss"] = cpu[i], both[i].rss_mib()
        row["list_services"], row["list_revisions"], row["list_selected"] = (x[i] for x in lists)
    watch: list[list[float]] = [[], []]
    for _ in range(ROUNDS):  # alternating, so both see the same load
        for i, p in enumerate(both):
            watch[i].append(watch_p50(p, "svc-0000", 5))
    gateway = gateway_p50(both, "svc-0000", requests)
    ready: list[list[float]] = [[], []]
    for k in range(ROUNDS):
        for i, p in enumerate(both):
            ready[i].append(create_to_ready(p, f"probe-{len(plane.services)}-{k}"))
    for i, row in enumerate(rows):
        row["watch"] = statistics.median(watch[i])
        row["direct"], row["through"] = gateway[i]
        row["added"] = row["through"] - row["direct"]
        row["ready"] = p50(ready[i])
    return rows[0], rows[1]


def report(steps: list[int], rows: list[tuple[Row, Row]], load: str) -> None:
    width = max(len(label) for label, _, _ in ROWS)
    print(f"\nscale: the plane's cost as it holds more Services (load when measured: {load})")
    print("each step beside the reference plane with 1 Service, measured in the same moments")
    heads = "".join(f"{'1 beside':>10}{f'N={s}':>10}{'ratio':>8}" for s in steps)
    print(f"{'':{width}}  {heads}")
    for label, key, fmt in ROWS:
        cells = ""
        for ref, big in rows:
            ratio = f"{big[key] / ref[key]:.2f}" if ref[key] > 0 else "-"
            cells += f"{fmt.format(ref[key]):>10}{fmt.format(big[key]):>10}{ratio:>8}"
        print(f"{label:{width}}  {cells}")
    ref, big = rows[-1]
    n = steps[-1]

    def headline(what: str, key: str, unit: str, fmt: str, goal: str) -> None:
        ratio = big[key] / ref[key] if ref[key] > 0 else float("inf")
        print(
            f"HEADLINE scale {what} at {n} services: {fmt.format(big[key])}{unit} vs"
            f" {fmt.format(ref[key])}{unit} at 1 = {ratio:.2f} ({goal})"
        )

    print(
        f"HEADLINE scale idle CPU at {n} services: {big['idle_cpu']:.2f}% of a core"
        f" vs 2% goal = {big['idle_cpu'] / 2:.2f} (goal < 1; {ref['idle_cpu']:.2f}% at 1)"
    )
    headline("gateway added p50", "added", " ms", "{:.3f}", "goal 1.0: same as with one route")
    headline("list Services p50", "list_services", " ms", "{:.2f}", f"{n} items vs 1")
    headline("watch event p50", "watch", " ms", "{:.2f}", "goal ~1")
    headline("create->Ready p50", "ready", " ms", "{:.0f}", "goal ~1")
    headline("plane RSS", "rss", " MiB", "{:.0f}", "grows with objects held")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scale", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="steps 10,50, shorter windows")
    parser.add_argument("--steps", default=None, help="service counts of the growing plane")
    parser.add_argument("--objects-per-service", type=int, default=10)
    parser.add_argument("--idle", type=float, default=None, help="idle window, seconds")
    parser.add_argument("--requests", type=int, default=None, help="gateway GETs per side")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the idle plane at the last step"
    )
    args = parser.parse_args(argv)
    steps = [int(s) for s in (args.steps or ("10,50" if args.quick else "20,200")).split(",")]
    idle = args.idle or (4.0 if args.quick else 10.0)
    requests = args.requests or (1000 if args.quick else 3000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="knserve-scale-") as tmp:
        ref = ScalePlane(Path(tmp) / "ref")
        plane = None
        try:
            ref.grow(1, args.objects_per_service)
            plane = ScalePlane(Path(tmp) / "grow")
            for step in steps:
                objects = step * args.objects_per_service
                print(f"-- {step} services, {objects} objects", flush=True)
                started = time.monotonic()
                plane.grow(step, objects)
                plane.wait_ready()
                ref.wait_ready()
                print(f"   all Ready {time.monotonic() - started:.1f}s after growing", flush=True)
                profile = f"{step} services" if args.profile and step == steps[-1] else None
                rows.append(measure(ref, plane, idle, requests, profile))
        finally:
            for p in (plane, ref):
                if p is not None:
                    p.close()
    report(steps, rows, " ".join(Path("/proc/loadavg").read_text().split()[:3]))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
