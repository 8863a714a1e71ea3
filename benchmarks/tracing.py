"""What tracing costs: V2 requests/s through the gateway to a model server, tracing off and on.

    python -m benchmarks tracing [--duration 8] [--conc 8] [--rounds 2]

The gateway (one process, uvloop) routes to one model server replica (`python -m knserve.runtime`,
scikit-learn's iris LogisticRegression trained here) on core 0; wrk posts a V2 JSON request on
core 1. "off" runs both with no `OTEL_*` variables; "on" gives both `OTEL_EXPORTER_OTLP_ENDPOINT`,
an OTLP/HTTP sink in this process that takes every export (so each request makes a gateway
`route` span and the server's request, preprocess, predict and postprocess spans); "on 10%" also
sets `OTEL_TRACES_SAMPLER=parentbased_traceidratio` with 0.1, so the gateway samples one trace in
ten and the server follows its decision. The modes alternate for `--rounds`, to spread the
machine's noise over all; the table shows each run and the ratios of the medians.

Tracing off still reads and writes the request id and trace headers; the cost of that path is
measured apart (`off_path_us`: the gateway's `Telemetry.forward` and the server's
`propagation.enter` for a typical request, timed in a loop) and shown against the CPU a request
takes in both processes. Goals (issue 15): off costs < 2 %, on < 15 %.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import timeit
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from benchmarks._common import free_port
from benchmarks.autoscaling import train_iris
from benchmarks.gateway import _wait_port, cpu_seconds, run_wrk

REPO = Path(__file__).resolve().parent.parent
HOST = "iris.default.localhost"
# Every trace sampled (OpenTelemetry's default), and one in ten, decided at the gateway.
MODES = ("off", "on", "on 10%")
BODY = '{"inputs":[{"name":"input-0","shape":[1,4],"datatype":"FP64","data":[6.8,2.8,4.8,1.4]}]}'


def serve_gateway(port: int, backend_port: int) -> None:
    """The gateway with one route to the model server; spans when the OTEL_* variables say."""
    import asyncio

    import uvloop

    from knserve.knative.activator.gateway import Gateway, RouteSpec, TrafficTarget
    from knserve.knative.activator.telemetry import Telemetry
    from knserve.runtime.tracing import flush_all, tracer

    class Static:
        def endpoints(self, namespace: str, revision: str) -> tuple[str, ...]:
            return (f"127.0.0.1:{backend_port}",)

    async def main() -> None:
        gateway = Gateway(Static(), telemetry=Telemetry(tracer("knserve-gateway")))
        gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-00001", 100),)))
        gateway.set_revision("default", "iris-00001", 0, 300)
        await gateway.start("127.0.0.1", port)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await gateway.close(grace=0.5)
        flush_all()

    uvloop.run(main())


class Sink:
    """An OTLP/HTTP endpoint that takes every export and counts the bytes."""

    def __init__(self) -> None:
        received = self.received = [0, 0]  # requests, bytes

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("content-length", "0"))
                self.rfile.read(size)
                received[0] += 1
                received[1] += size
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def off_path_us() -> float:
    """Microseconds per request of what tracing off still does: the gateway's header handling
    and the server's request context, for a request with no id and no trace."""
    from knserve.knative.activator.exchange import Exchange
    from knserve.knative.activator.telemetry import Telemetry
    from knserve.runtime.propagation import enter

    telemetry = Telemetry()
    exchange = Exchange.__new__(Exchange)
    exchange.host = HOST.encode()
    headers = {"host": HOST, "content-type": "application/json", "x-request-id": "x"}

    def one() -> None:
        telemetry.forward(exchange, [])
        enter(headers, "iris")

    count = 200_000
    return min(timeit.repeat(one, number=count, repeat=3)) / count * 1e6


def _wait_ready(port: int, timeout: float = 60.0) -> None:
    """Until the model has loaded (the server listens before it has)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
            return
        time.sleep(0.05)  # polling another process's readiness; nothing to await
    raise RuntimeError(f"the model server on port {port} was not ready after {timeout}s")


def run_mode(
    mode: str, model_dir: Path, sink: Sink, conc: int, duration: float
) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    if mode != "off":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.endpoint
    if mode == "on 10%":
        env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        env["OTEL_TRACES_SAMPLER_ARG"] = "0.1"
    runtime_port, gateway_port = free_port(), free_port()
    runtime = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "knserve.runtime",
            "--model-name",
            "iris",
            "--model-dir",
            str(model_dir),
            "--http-port",
            str(runtime_port),
        ],
        cwd=REPO,
        env={**env, "K_SERVICE": "iris-predictor"},
        stdout=subprocess.DEVNULL,
    )
    gateway = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            "-m",
            "benchmarks.tracing",
            "--serve-gateway",
            str(gateway_port),
            str(runtime_port),
        ],
        cwd=REPO,
        env=env,
    )
    try:
        _wait_port(runtime_port, 60)
        _wait_port(gateway_port)
        _wait_ready(runtime_port)
        script = Path(tempfile.mkdtemp()) / "post.lua"
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = '{BODY}'\n"
        )
        url = f"http://127.0.0.1:{gateway_port}/v2/models/iris/infer"
        run_wrk(url, conc, 1.0, HOST, script)  # warm-up
        before = sum(cpu_seconds(runtime.pid)) + sum(cpu_seconds(gateway.pid))
        row = run_wrk(url, conc, duration, HOST, script)
        after = sum(cpu_seconds(runtime.pid)) + sum(cpu_seconds(gateway.pid))
        row["cpu_us"] = (after - before) / max(1.0, row["rps"] * duration) * 1e6
        return row
    finally:
        for process in (gateway, runtime):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks tracing", description=__doc__)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--conc", type=int, default=8, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs")
    parser.add_argument("--serve-gateway", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_gateway:
        serve_gateway(*args.serve_gateway)
        return
    sink = Sink()
    with tempfile.TemporaryDirectory() as folder:
        model_dir = Path(folder) / "iris"
        train_iris(model_dir)
        print(f"V2 iris through the gateway, wrk -c{args.conc}, {args.duration:g}s per run")
        print(
            f"{'mode':<5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'errors':>6}"
        )
        results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                row = run_mode(mode, model_dir, sink, args.conc, args.duration)
                results[mode].append(row)
                print(
                    f"{mode:<7} {row['rps']:>9.0f} {row['p50']:>8.3f} {row['p99']:>8.3f} "
                    f"{row['cpu_us']:>11.1f} {row['errors'] + row['socket_errors']:>6.0f}",
                    flush=True,
                )
                time.sleep(0.5)  # the ports of the last run close before the next binds
    off = statistics.median(r["rps"] for r in results["off"])
    cpu = statistics.median(r["cpu_us"] for r in results["off"])
    for mode in MODES[1:]:
        on = statistics.median(r["rps"] for r in results[mode])
        print(f"tracing {mode} / off: {on / off:.3f} of the requests/s ({1 - on / off:.1%} cost)")
    path = off_path_us()
    print(
        f"tracing off: {path:.2f} us per request for ids and trace headers, "
        f"{path / cpu:.2%} of the {cpu:.0f} us of CPU a request takes"
    )
    print(f"OTLP sink got {sink.received[0]} exports, {sink.received[1] / 1e6:.1f} MB")
    sink.server.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
