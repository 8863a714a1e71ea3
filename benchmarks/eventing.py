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

A last run paces the senders at `--paced` events/s (1,500, Knative's figure), below what the
broker delivers, so its latency is the broker's own rather than a backlog's. `--profile`
samples the plane with py-spy during the unpaced end-to-end run at the highest concurrency and
prints where its time goes. Knative publishes about 1,200-1,500 events/s through a broker on a cluster (in-memory,
not durable); the goals (issue 6) are 5,000 events/s accepted durably and 2,000/s delivered.
"""

from __future__ import annotations

import argparse
import asyncio
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

PLANE_CORE = 0
CLIENT_CORE = 1
REPO = Path(__file__).resolve().parent.parent
PY_SPY = str(REPO / ".venv" / "bin" / "py-spy")
KNATIVE = "1,200-1,500"  # events/s, Knative's published broker throughput (not durable)
GOAL_ACCEPTED, GOAL_DELIVERED = 5000, 2000


# -- the trivial subscriber ------------------------------------------------------------------------
def serve_sink(port: int) -> None:
    """Answers every POST with 200 and keeps, per event, the latency from its `ce-senttime`;
    `GET /stats` returns {"count": n, "latencies": [...]}, `DELETE /` forgets them."""
    import httptools
    import uvloop

    ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    latencies: list[float] = []
    seen: set[bytes] = set()

    class Sink(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.sent: float | None = None
            self.id = b""

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_header(self, name: bytes, value: bytes) -> None:
            name = name.lower()
            if name == b"ce-senttime":
                self.sent = float(value)
            elif name == b"ce-id":
                self.id = value

        def on_message_complete(self) -> None:
            method = self.parser.get_method()
            if method == b"GET":
                body = json.dumps({"count": len(latencies), "latencies": latencies}).encode()
                self.transport.write(  # type: ignore[attr-defined]
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                return
            if method == b"DELETE":
                latencies.clear()
                seen.clear()
            elif self.sent is not None and self.id not in seen:  # at least once: count once
                seen.add(self.id)
                latencies.append(time.monotonic() - self.sent)
            self.sent = None
            self.transport.write(ok)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


# -- the load generator ----------------------------------------------------------------------------
class _Done:
    def __init__(self) -> None:
        self.done = False

    def on_message_complete(self) -> None:
        self.done = True


async def send_events(
    port: int, path: str, count: int, senders: int, run: str, rate: float | None = None
) -> float:
    """POST `count` events with `senders` keep-alive connections, as fast as they are accepted or
    (`rate`) event n at start + n/rate; seconds until the last 202."""
    import httptools

    todo = collections.deque(range(count))
    start = time.monotonic()

    async def sender() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while todo:
                n = todo.popleft()
                if rate is not None and (wait := start + n / rate - time.monotonic()) > 0:
                    await asyncio.sleep(wait)
                body = b'{"n": %d}' % n
                writer.write(
                    (
                        f"POST {path} HTTP/1.1\r\nhost: broker\r\nce-specversion: 1.0\r\n"
                        f"ce-id: {run}-{n}\r\nce-source: /bench\r\nce-type: bench.tick\r\n"
                        f"ce-senttime: {time.monotonic():.6f}\r\ncontent-type: application/json\r\n"
                        f"content-length: {len(body)}\r\n\r\n"
                    ).encode()
                    + body
                )
                done = _Done()
                parser = httptools.HttpResponseParser(done)
                while not done.done:
                    chunk = await reader.read(65536)
                    if not chunk:
                        raise RuntimeError("the ingress closed the connection")
                    parser.feed_data(chunk)
                if parser.get_status_code() != 202:
                    raise RuntimeError(f"the ingress answered {parser.get_status_code()}")
        finally:
            writer.close()

    await asyncio.gather(*(sender() for _ in range(senders)))
    return time.monotonic() - start


def _run(coroutine: object) -> float:
    """The load generator on uvloop (the cheaper loop, so the client side is not the limit)."""
    import uvloop

    return uvloop.run(coroutine)  # type: ignore[arg-type,no-any-return]


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
            self.create(
                "triggers",
                {
                    "apiVersion": "eventing.knative.dev/v1",
                    "kind": "Trigger",
                    "metadata": {"name": f"{name}-sink", "namespace": "default"},
                    "spec": {"broker": name, "subscriber": {"uri": sink}},
                },
            )
            self.ready("triggers", f"{name}-sink")
        return f"/default/{name}"

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
    many = args.events or (4000 if args.quick else 20000)
    concs = [int(c) for c in args.conc.split(",")]

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
        _wait(lambda: _http("GET", sink_url + "stats") is not None, 10, "the subscriber")
        print(
            f"knserve up on core {PLANE_CORE} (one process, --no-zygote, log level warning); "
            f"senders and subscriber on core {CLIENT_CORE}"
        )
        runs: list[tuple[int, float | None]] = [(c, None) for c in concs]
        if args.paced:
            runs.append((max(concs), args.paced))
        for index, (conc, rate) in enumerate(runs):
            count = many if conc > 4 else max(1000, many // 5)
            if rate is not None:
                count = min(count, int(rate * 10))  # ten seconds at the pace
            run = f"c{conc}r{rate or 0:g}"
            row: dict[str, object] = {"conc": conc, "rate": rate, "events": count, "bare": None}
            if rate is None:  # ingress only
                path = plane.broker(f"bare-{index}", None)
                before = cpu_seconds(plane.process.pid)
                seconds = _run(send_events(plane.broker_port, path, count, conc, run + "bare"))
                row["bare"] = count / seconds
                row["bare_cpu"] = (cpu_seconds(plane.process.pid) - before) / count
            # end to end
            _http("DELETE", sink_url)
            path = plane.broker(f"e2e-{index}", sink_url)
            spy = None
            if args.profile and rate is None and conc == max(concs) and shutil.which(PY_SPY):
                spy = subprocess.Popen(
                    [
                        PY_SPY,
                        "record",
                        "-r",
                        "250",
                        "-f",
                        "raw",
                        "-o",
                        str(workdir / "spy.txt"),
                        "-p",
                        str(plane.process.pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            before = cpu_seconds(plane.process.pid)
            start = time.monotonic()
            sent = _run(send_events(plane.broker_port, path, count, conc, run, rate))
            _wait(
                lambda count=count: _http("GET", sink_url + "stats")["count"] >= count,
                300,
                f"{count} deliveries",
            )
            total = time.monotonic() - start
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            latencies = _http("GET", sink_url + "stats")["latencies"]
            row.update(
                {
                    "accepted": count / sent,
                    "delivered": count / total,
                    "e2e_cpu": (cpu_seconds(plane.process.pid) - before) / count,
                    "p50": _pct(latencies, 0.5) * 1000,
                    "p99": _pct(latencies, 0.99) * 1000,
                }
            )
            rows.append(row)
        print(
            f"{'senders':>13} {'events':>6} | {'ingress only':>12} | {'accepted/s':>10} "
            f"{'delivered/s':>11} {'p50 ms':>8} {'p99 ms':>8} | {'plane CPU/event':>22}"
        )
        for r in rows:
            label = f"{r['conc']}" + (f" @{r['rate']:g}/s" if r["rate"] else "")
            bare = f"{r['bare']:>10.0f}/s" if r["bare"] else f"{'-':>12}"
            bare_cpu = f"{r['bare_cpu'] * 1e6:>5.0f} us in" if r["bare"] else f"{'-':>11}"
            print(
                f"{label:>13} {r['events']:>6} | {bare} | {r['accepted']:>10.0f} "
                f"{r['delivered']:>11.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} | "
                f"{bare_cpu}, {r['e2e_cpu'] * 1e6:>5.0f} us e2e"
            )
        best = max(rows, key=lambda r: r["delivered"])
        print(f"Knative (published, in-memory, a cluster): {KNATIVE} events/s through a broker.")
        print(
            f"Goals: {GOAL_ACCEPTED:,} accepted/s durably -> reached "
            f"{max(r['bare'] or 0 for r in rows):,.0f} (ingress only), "
            f"{max(r['accepted'] for r in rows if not r['rate']):,.0f} (while delivering); "
            f"{GOAL_DELIVERED:,} delivered/s -> reached {best['delivered']:,.0f}."
        )
        if args.profile and (workdir / "spy.txt").is_file():
            print(f"where the plane's time goes (py-spy, {concs[-1]} senders, end to end):")
            print(profile_summary(workdir / "spy.txt"))
    finally:
        if plane is not None:
            plane.stop()
        sink.terminate()
        sink.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
