"""How the plane's cost grows with the work it holds: 1 -> 20 -> 200 Knative Services.

    python -m benchmarks scale [--quick] [--steps 1,20,200] [--idle 10] [--profile]

One `knserve up` (Knative's default autoscaler settings) grows step by step. At each step it holds
N Services, a quarter of them with one replica (min-scale = max-scale = 1: at 200, 50 replicas)
and the rest scaled to zero (initial-scale 0), and 10 x N objects in the store (at 200: 2,000; the
Services' Configurations, Routes and Revisions, then Triggers on Brokers, 100 per Broker). Then:

- idle CPU: the plane process's CPU over `--idle` seconds with no traffic, % of one core
  (its replicas are other processes and not counted); RSS of the plane process;
- list: p50 of GET all Services, GET all Revisions, and one Service's Revisions by labelSelector;
- watch: p50 from a PATCH's response to its MODIFIED event on an open watch of Services;
- gateway: p50 of keep-alive GETs at concurrency 1 to one replica directly and through the
  gateway (interleaved blocks), and the p50 the gateway adds;
- create -> Ready: a new one-replica Service from POST until Ready=True on a watch (3 times;
  each is deleted again).

The last column is each figure at the largest step over the first: what grows with the work.
`--profile` samples the idle plane with py-spy (when on PATH) at the last step and prints where
its time goes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import tempfile
import time
import uuid
from contextlib import nullcontext
from pathlib import Path

from benchmarks._scale_plane import SERVING, ScalePlane, is_ready, service
from benchmarks._scale_profile import profiling

ROUNDS = 3


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


def idle_cpu(plane: ScalePlane, seconds: float) -> float:
    """Percent of one core the plane used while nothing happened."""
    before, started = plane.cpu_seconds(), time.monotonic()
    time.sleep(seconds)  # the idle window is the measurement itself
    return 100 * (plane.cpu_seconds() - before) / (time.monotonic() - started)


def list_p50(plane: ScalePlane, path: str, times: int = 15) -> float:
    return p50([plane.api.request("GET", path)[2] for _ in range(times)])


def watch_p50(plane: ScalePlane, name: str, times: int = 15) -> float:
    """From a merge-patch's response to the MODIFIED event carrying it, on one open watch."""
    rv = plane.api.must("GET", f"{SERVING}/services")["metadata"]["resourceVersion"]
    sock = socket.create_connection(("127.0.0.1", plane.api_port))
    conn = http.client.HTTPConnection("127.0.0.1", plane.api_port)
    conn.sock = sock
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


def create_to_ready(plane: ScalePlane, step: int) -> float:
    """p50 seconds (as ms) from POST of a one-replica Service to its Ready event, over ROUNDS."""
    samples = []
    for i in range(ROUNDS):
        name = f"probe-{step}-{i}"
        rv = plane.api.must("GET", f"{SERVING}/services")["metadata"]["resourceVersion"]
        conn = http.client.HTTPConnection("127.0.0.1", plane.api_port, timeout=120)
        conn.request("GET", f"{SERVING}/services?watch=true&resourceVersion={rv}")
        stream = conn.getresponse()
        started = time.perf_counter()
        plane.api.must("POST", f"{SERVING}/services", service(name, plane.root, warm=True))
        while True:
            event = json.loads(stream.readline())
            obj = event["object"]
            if obj["metadata"]["name"] == name and is_ready(obj):
                samples.append(time.perf_counter() - started)
                break
        conn.close()
        plane.api.must("DELETE", f"{SERVING}/services/{name}")
    return p50(samples)


def _get_timed(conn: http.client.HTTPConnection, host: str | None) -> float:
    started = time.perf_counter()
    conn.request("GET", "/", headers={"Host": host} if host else {})
    conn.getresponse().read()
    return time.perf_counter() - started


def gateway_p50(plane: ScalePlane, name: str, requests: int) -> tuple[float, float]:
    """(direct p50, through-gateway p50) in ms, interleaved in blocks of 100."""
    port = plane.replica_port(f"{name}-00001")
    direct = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    gateway = http.client.HTTPConnection("127.0.0.1", plane.port, timeout=30)
    host = f"{name}.default.localhost"
    for _ in range(50):  # warm both connections and the gateway's upstream pool
        _get_timed(direct, None), _get_timed(gateway, host)
    d, g = [], []
    for _ in range(max(1, requests // 100)):
        d += [_get_timed(direct, None) for _ in range(100)]
        g += [_get_timed(gateway, host) for _ in range(100)]
    direct.close()
    gateway.close()
    return p50(d), p50(g)


ROWS = [
    ("objects in the store", "objects", "{:.0f}"),
    ("replica processes", "replicas", "{:.0f}"),
    ("all Services Ready after growing (s)", "settle_s", "{:.1f}"),
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
    plane: ScalePlane, step: int, objects: int, idle: float, requests: int, profile: bool
) -> dict[str, float]:
    started = time.monotonic()
    plane.grow(step, objects)
    plane.wait_ready()
    row: dict[str, float] = {"settle_s": time.monotonic() - started}
    row["objects"] = plane.object_count()
    row["replicas"] = (step + 3) // 4
    time.sleep(2)  # let the last reconciles and the replicas' first probes pass
    with profiling(plane.proc.pid, idle, f"{step} services") if profile else nullcontext():
        row["idle_cpu"] = idle_cpu(plane, idle)
    row["rss"] = plane.rss_mib()
    row["list_services"] = list_p50(plane, f"{SERVING}/services")
    row["list_revisions"] = list_p50(plane, f"{SERVING}/revisions")
    selector = "labelSelector=serving.knative.dev/service%3Dsvc-0000"
    row["list_selected"] = list_p50(plane, f"{SERVING}/revisions?{selector}")
    row["watch"] = watch_p50(plane, "svc-0000")
    row["direct"], row["through"] = gateway_p50(plane, "svc-0000", requests)
    row["added"] = row["through"] - row["direct"]
    row["ready"] = create_to_ready(plane, step)
    return row


def report(steps: list[int], rows: list[dict[str, float]], load: str) -> None:
    width = max(len(label) for label, _, _ in ROWS)
    print(f"\nscale: the plane's cost as it holds more Services (load when measured: {load})")
    print(f"{'':{width}}  " + "".join(f"{f'N={s}':>12}" for s in steps) + f"{'last/first':>12}")
    for label, key, fmt in ROWS:
        cells = "".join(f"{fmt.format(r[key]):>12}" for r in rows)
        first, last = rows[0][key], rows[-1][key]
        growth = f"{last / first:.2f}x" if first > 0 else "-"
        print(f"{label:{width}}  {cells}{growth:>12}")
    first, last, n = rows[0], rows[-1], steps[-1]
    print(
        f"HEADLINE scale idle CPU at {n} services: {last['idle_cpu']:.2f}% of a core"
        f" vs 2% goal = {last['idle_cpu'] / 2:.2f} (goal < 1)"
    )
    print(
        f"HEADLINE scale gateway added p50 with {n} routes: {last['added']:.3f} ms"
        f" vs {first['added']:.3f} ms with {steps[0]} = {last['added'] / max(first['added'], 1e-6):.2f}"
        " (goal 1.0)"
    )
    print(
        f"HEADLINE scale watch p50 at {n} services: {last['watch']:.2f} ms vs {first['watch']:.2f}"
        f" ms at {steps[0]} = {last['watch'] / first['watch']:.2f} (goal ~1)"
    )
    print(
        f"HEADLINE scale create->Ready p50 at {n} services: {last['ready']:.0f} ms vs"
        f" {first['ready']:.0f} ms at {steps[0]} = {last['ready'] / first['ready']:.2f} (goal ~1)"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scale", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="steps 1,10,50, shorter windows")
    parser.add_argument("--steps", default=None, help="service counts, e.g. 1,20,200")
    parser.add_argument("--objects-per-service", type=int, default=10)
    parser.add_argument("--idle", type=float, default=None, help="idle window, seconds")
    parser.add_argument("--requests", type=int, default=None, help="gateway GETs per side")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the idle plane at the last step"
    )
    args = parser.parse_args(argv)
    steps = [int(s) for s in (args.steps or ("1,10,50" if args.quick else "1,20,200")).split(",")]
    idle = args.idle or (4.0 if args.quick else 10.0)
    requests = args.requests or (1000 if args.quick else 3000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="knserve-scale-") as tmp:
        plane = ScalePlane(Path(tmp))
        try:
            for step in steps:
                print(f"-- {step} services, {step * args.objects_per_service} objects", flush=True)
                objects = step * args.objects_per_service
                profile = args.profile and step == steps[-1]
                rows.append(measure(plane, step, objects, idle, requests, profile))
                print("   " + ", ".join(f"{k} {v:.3g}" for k, v in rows[-1].items()), flush=True)
        finally:
            plane.close()
    report(steps, rows, " ".join(Path("/proc/loadavg").read_text().split()[:3]))


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
