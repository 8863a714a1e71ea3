"""The broker end to end on a real `knserve up`: events accepted durably, and delivered.

    python -m benchmarks eventing [--quick] [--events 20000] [--conc 1,32] [--profile]

`knserve up` runs alone on core 0 (one process: its ingress, event log and dispatcher share one
event loop, as they do for a user). On core 1: the load generator (keep-alive HTTP/1.1
connections, httptools; each sender POSTs its next event as soon as the last got its 202) and
the trivial subscriber (an httptools server answering 200, in its own process).

For each concurrency (the number of senders), two runs on fresh brokers:

* ingress only: a broker with no trigger, so the number is what the ingress accepts (202 after
  the SQLite commit) with nothing else to do;
* end to end: a broker with one trigger to the subscriber. "accepted/s" is the senders' rate
  while deliveries run beside them; "delivered/s" is events over the time from the first send
  to the last delivery; latency is from the moment a sender wrote the event to its arrival at
  the subscriber (CLOCK_MONOTONIC is system-wide, so the two processes compare).

A paced run sends at `--paced` events/s (1,500, Knative's figure), below what the broker
delivers, so its latency is the broker's own rather than a backlog's. A fan-out run puts
`--triggers` (100) filtered Triggers on one broker (see `_eventing_fanout`): every event matches
ten of them; it prints delivered/s over all triggers, and the cost of running all 100 filters on
one event, timed apart from the log and HTTP. `--profile` samples the plane with py-spy during
the unpaced end-to-end run at the highest concurrency and prints where its time goes.

On a shared machine the plane rarely gets its whole core, so each headline also gives the
plane's CPU per event and the rate that would allow on a whole core. Beside ours, in the same run: the ceiling HTTP allows (the same senders against a bare httptools
server on the plane's core, which answers at once and stores nothing), and Knative's published
1,200-1,500 events/s through a broker on a cluster (in memory, not durable). The goals (issue 20)
are 20,000 events/s accepted durably at 32 senders and 10,000/s delivered end to end.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks._common import free_port
from benchmarks._eventing_fanout import TRIGGERS, filter_cost, trigger_spec
from benchmarks._eventing_load import TYPES, run_uvloop, send_events, serve_sink

PLANE_CORE = 0
CLIENT_CORE = 1
REPO = Path(__file__).resolve().parent.parent
PY_SPY = str(REPO / ".venv" / "bin" / "py-spy")
KNATIVE = "1,200-1,500"  # events/s, Knative's published broker throughput (not durable)
KNATIVE_TOP = 1500  # the ratio is taken against the upper figure
GOAL_ACCEPTED, GOAL_DELIVERED = 20000, 10000  # issue 20


# -- plumbing --------------------------------------------------------------------------------------
def _http(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
        json_body = response.headers.get("content-type", "").startswith("application/json")
    return json.loads(text) if text and json_body else {}


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.05)  # polling another process; nothing to await
    raise RuntimeError(f"{what} not within {timeout}s")


def _taskset(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


class Plane:
    """`knserve up` pinned to the plane's core, on a temporary data dir."""

    def __init__(self, workdir: Path) -> None:
        self.api_port, self.broker_port = free_port(), free_port()
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.log = (workdir / "plane.log").open("wb")
        self.process = subprocess.Popen(
            [
                *_taskset(PLANE_CORE),
                sys.executable,
                "-m",
                "knserve.knative.cli",
                "up",
                "--data-dir",
                str(workdir / "plane"),
                "--port",
                str(free_port()),
                "--api-port",
                str(self.api_port),
                "--broker-port",
                str(self.broker_port),
                "--log-level",
                "warning",
                "--no-zygote",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        try:
            _wait(lambda: _http("GET", f"{self.api}/healthz") is not None, 60, "knserve up")
        except BaseException:
            self.stop()
            raise

    def create(self, plural: str, obj: dict) -> None:
        _http("POST", f"{self.api}/apis/eventing.knative.dev/v1/namespaces/default/{plural}", obj)

    def ready(self, plural: str, name: str) -> None:
        url = f"{self.api}/apis/eventing.knative.dev/v1/namespaces/default/{plural}/{name}"

        def check() -> bool:
            status = _http("GET", url).get("status") or {}
            return any(
                c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
            )

        _wait(check, 30, f"{plural}/{name} Ready")

    def broker(self, name: str, sink: str | None) -> str:
        self.create(
            "brokers",
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Broker",
                "metadata": {"name": name, "namespace": "default"},
            },
        )
        self.ready("brokers", name)
        if sink is not None:
            self.trigger(name, f"{name}-sink", {"subscriber": {"uri": sink}})
        return f"/default/{name}"

    def trigger(self, broker: str, name: str, spec: dict) -> None:
        self.create(
            "triggers",
            {
                "apiVersion": "eventing.knative.dev/v1",
                "kind": "Trigger",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"broker": broker, **spec},
            },
        )
        self.ready("triggers", name)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.log.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile_summary(raw: Path, top: int = 16) -> str:
    """Self time per function, and time inside a few functions that explain the total."""
    own: collections.Counter[str] = collections.Counter()
    inside: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        total += int(n)
        own[frames[-1]] += int(n)
        for frame in set(frames):
            inside[frame] += int(n)
    if not total:
        return "  (py-spy recorded nothing)"
    lines = [f"  {total} samples; self time:"]
    lines += [f"  {c / total:6.1%}  {f}" for f, c in own.most_common(top)]
    lines.append("  inclusive time of the main steps:")
    keys = (
        "Ingress.__call__",
        "EventLog.append_many",
        "Dispatcher._deliver",
        "Dispatcher._send",
        "EventLog.pending",
        "EventLog.mark_delivered",
        "AsyncClient.send",
        "LeanSender",
        "AsyncConnectionPool",
        "httptools_impl.py",
        "run_asgi",
    )
    for key in keys:
        share = max((c for f, c in inside.items() if key in f), default=0) / total
        if share:
            lines.append(f"  {share:6.1%}  {key}")
    return "\n".join(lines)


def _spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    if not shutil.which(PY_SPY):
        return None
    return subprocess.Popen(
        [PY_SPY, "record", "-r", "250", "-f", "raw", "-o", str(out), "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _sink_stats(sink_url: str) -> dict:
    return _http("GET", sink_url + "stats")


def ceiling(count: int, senders: int) -> float:
    """Events/s the same senders get from a bare httptools server on the plane's core that
    answers at once and stores nothing: what HTTP alone allows here."""
    port = free_port()
    server = subprocess.Popen(
        [
            *_taskset(PLANE_CORE),
            sys.executable,
            "-m",
            "benchmarks.eventing",
            "--serve-sink",
            str(port),
        ],
        cwd=REPO,
    )
    try:
        _wait(lambda: _http("GET", f"http://127.0.0.1:{port}/stats") is not None, 10, "ceiling")
        return count / run_uvloop(send_events(port, "/ceiling", count, senders, "ceiling"))
    finally:
        server.terminate()
        server.wait(10)


def measure(
    plane: Plane,
    sink_url: str,
    name: str,
    count: int,
    conc: int,
    rate: float | None,
    *,
    bare: bool,
    spy: Path | None = None,
    triggers: list[dict] | None = None,
    deliveries: int = 0,
) -> dict[str, object]:
    """One run on fresh brokers: ingress only (`bare`), then end to end with one trigger to the
    sink, or with `triggers` (specs) and `deliveries` expected."""
    row: dict[str, object] = {"conc": conc, "rate": rate, "events": count, "bare": None}
    if bare:
        path = plane.broker(f"bare-{name}", None)
        before = cpu_seconds(plane.process.pid)
        seconds = run_uvloop(send_events(plane.broker_port, path, count, conc, name + "bare"))
        row["bare"] = count / seconds
        row["bare_cpu"] = (cpu_seconds(plane.process.pid) - before) / count
    _http("DELETE", sink_url)
    if triggers is None:
        path = plane.broker(f"e2e-{name}", sink_url)
        deliveries = count
    else:
        path = plane.broker(f"e2e-{name}", None)
        for i, spec in enumerate(triggers):
            plane.trigger(f"e2e-{name}", f"e2e-{name}-t{i}", spec)
    recorder = _spy(plane.process.pid, spy) if spy is not None else None
    before = cpu_seconds(plane.process.pid)
    start = time.monotonic()
    sent = run_uvloop(send_events(plane.broker_port, path, count, conc, name, rate))
    _wait(lambda: _sink_stats(sink_url)["count"] >= deliveries, 300, f"{deliveries} deliveries")
    total = time.monotonic() - start
    if recorder is not None:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(30)
    latencies = _sink_stats(sink_url)["latencies"]
    row.update(
        accepted=count / sent,
        delivered=deliveries / total,
        e2e_cpu=(cpu_seconds(plane.process.pid) - before) / deliveries,
        p50=_pct(latencies, 0.5) * 1000,
        p99=_pct(latencies, 0.99) * 1000,
    )
    return row


def _print_rows(rows: list[dict[str, object]]) -> None:
    print(
        f"{'senders':>16} {'events':>6} | {'ingress only':>12} | {'accepted/s':>10} "
        f"{'delivered/s':>11} {'p50 ms':>8} {'p99 ms':>8} | {'plane CPU/event (/delivery)':>27}"
    )
    for r in rows:
        label = str(r.get("label") or r["conc"]) + (f" @{r['rate']:g}/s" if r["rate"] else "")
        bare = f"{r['bare']:>10.0f}/s" if r["bare"] else f"{'-':>12}"
        bare_cpu = f"{r['bare_cpu'] * 1e6:>5.0f} us in" if r["bare"] else f"{'-':>11}"
        print(
            f"{label:>16} {r['events']:>6} | {bare} | {r['accepted']:>10.0f} "
            f"{r['delivered']:>11.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} | "
            f"{bare_cpu}, {r['e2e_cpu'] * 1e6:>5.0f} us e2e"
        )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks eventing", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer events (a smoke run)")
    parser.add_argument("--events", type=int, help="events per run at the highest concurrency")
    parser.add_argument("--conc", default="1,32", help="comma-separated sender counts")
    parser.add_argument(
        "--paced",
        type=float,
        default=1500.0,
        metavar="EVENTS_PER_S",
        help="one more run at the highest concurrency, paced (0: none); its "
        "latency is the broker's, not a backlog's",
    )
    parser.add_argument(
        "--triggers", type=int, default=TRIGGERS, help="triggers on the fan-out broker (0: none)"
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the plane (last run)")
    parser.add_argument("--serve-sink", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_sink:
        serve_sink(args.serve_sink)
        return
    if (os.cpu_count() or 1) < 2:
        print(
            "warning: fewer than 2 cores; plane, senders and subscriber share one", file=sys.stderr
        )
    if hasattr(os, "sched_setaffinity") and shutil.which("taskset"):
        os.sched_setaffinity(0, {CLIENT_CORE % (os.cpu_count() or 1)})
    many = args.events or (8000 if args.quick else 30000)
    concs = [int(c) for c in args.conc.split(",")]
    top = max(concs)

    workdir = Path(tempfile.mkdtemp(prefix="knserve-bench-eventing-"))
    sink_port = free_port()
    sink = subprocess.Popen(
        [
            *_taskset(CLIENT_CORE),
            sys.executable,
            "-m",
            "benchmarks.eventing",
            "--serve-sink",
            str(sink_port),
        ],
        cwd=REPO,
    )
    sink_url = f"http://127.0.0.1:{sink_port}/"
    plane: Plane | None = None
    rows = []
    try:
        plane = Plane(workdir)
        _wait(lambda: _sink_stats(sink_url) is not None, 10, "the subscriber")
        print(
            f"knserve up on core {PLANE_CORE} (one process, --no-zygote, log level warning); "
            f"senders and subscriber on core {CLIENT_CORE}; load {os.getloadavg()[0]:.2f}"
        )
        http_ceiling = ceiling(many, top)
        for conc in concs:
            count = many if conc > 4 else max(1000, many // 10)
            spy = workdir / "spy.txt" if args.profile and conc == top else None
            rows.append(measure(plane, sink_url, f"c{conc}", count, conc, None, bare=True, spy=spy))
        if args.paced:
            count = min(many, int(args.paced * 5))  # five seconds at the pace
            rows.append(measure(plane, sink_url, "paced", count, top, args.paced, bare=False))
        fan = None
        if args.triggers:
            count = max(1000, many // 10)
            specs = [trigger_spec(i, sink_url) for i in range(args.triggers)]
            matched = sum(
                1 for n in range(count) for i in range(args.triggers) if i % TYPES == n % TYPES
            )
            fan = measure(
                plane,
                sink_url,
                "fanout",
                count,
                top,
                None,
                bare=False,
                triggers=specs,
                deliveries=matched,
            )
            fan["label"] = f"{top}, {args.triggers} trig"
            rows.append(fan)
        _print_rows(rows)
        best = next(r for r in rows if r["conc"] == top and r["bare"])
        print(
            f"ceiling: a bare httptools server on the plane's core (answers at once, stores "
            f"nothing), {top} senders: {http_ceiling:,.0f} requests/s"
        )
        print(
            f"Knative (published, in-memory, not durable, a cluster): {KNATIVE} events/s through a broker."
        )
        print(
            f"HEADLINE broker durable ingress ({top} senders): {best['bare']:,.0f}/s vs Knative "
            f"{KNATIVE_TOP:,}/s (in memory) = {best['bare'] / KNATIVE_TOP:.1f}x; "
            f"vs bare HTTP ceiling {http_ceiling:,.0f}/s = {best['bare'] / http_ceiling:.2f} "
            f"(goal >= {GOAL_ACCEPTED:,}/s; plane CPU {best['bare_cpu'] * 1e6:.0f} us/event = "
            f"{1 / best['bare_cpu']:,.0f}/s on a whole core)"
        )
        print(
            f"HEADLINE broker end-to-end delivered ({top} senders, 1 trigger): "
            f"{best['delivered']:,.0f}/s vs Knative {KNATIVE_TOP:,}/s (in memory) = "
            f"{best['delivered'] / KNATIVE_TOP:.1f}x (goal >= {GOAL_DELIVERED:,}/s; plane CPU "
            f"{best['e2e_cpu'] * 1e6:.0f} us/event = {1 / best['e2e_cpu']:,.0f}/s on a whole core)"
        )
        if fan is not None:
            cost, per_event = filter_cost(args.triggers)
            print(
                f"{args.triggers} triggers: every filter on one event costs {cost:.1f} us "
                f"({cost * 1000 / args.triggers:.0f} ns per trigger; {per_event:.0f} match per event)"
            )
            print(
                f"HEADLINE broker {args.triggers} triggers delivered ({top} senders): "
                f"{fan['delivered']:,.0f}/s vs 1 trigger {best['delivered']:,.0f}/s = "
                f"{fan['delivered'] / best['delivered']:.2f} (goal: not below 1)"
            )
            print(
                f"HEADLINE broker {args.triggers} triggers filter cost per event: {cost:.1f} us vs "
                f"plane CPU per event accepted {best['bare_cpu'] * 1e6:.0f} us = "
                f"{cost / (best['bare_cpu'] * 1e6):.2f} (goal: a small share)"
            )
        if args.profile and (workdir / "spy.txt").is_file():
            print(f"where the plane's time goes (py-spy, {top} senders, end to end):")
            print(profile_summary(workdir / "spy.txt"))
    finally:
        if plane is not None:
            plane.stop()
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
