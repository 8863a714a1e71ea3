"""The gateway's overhead: a trivial backend called directly and through the gateway, in one run.

    python -m benchmarks gateway [--duration 10] [--conc 1,64] [--profile]

The gateway runs alone on core 0 (one process, uvloop); the trivial backend (an httptools protocol
answering "ok" on keep-alive connections) and wrk share core 1. For each concurrency, wrk loads the
backend directly, then the same backend through the gateway (Host `bench.default.localhost`), and
the table shows req/s, p50 and p99 of both and the p50 the gateway adds. `--profile` runs the gateway
under cProfile and prints where its time goes.

Goal (issue 4): at least 10,000 req/s through one gateway core, under 0.3 ms added p50 at concurrency 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._common import free_port

GATEWAY_CORE = 0
BACKEND_CORE = 1
HOST = "bench.default.localhost"
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


# -- the processes under test ----------------------------------------------------------------------
def serve_backend(port: int) -> None:
    """A minimal keep-alive HTTP server: the cheapest possible replica."""
    import httptools
    import uvloop

    response = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"

    class Backend(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.transport.write(response)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Backend, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def serve_gateway(port: int, backend_port: int, profile: bool) -> None:
    """The gateway with one route to one revision whose single replica is the backend."""
    import uvloop

    from knserve.knative.activator.gateway import Gateway, RouteSpec, TrafficTarget

    class Static:
        def endpoints(self, namespace: str, revision: str) -> tuple[str, ...]:
            return (f"127.0.0.1:{backend_port}",)

    async def main() -> None:
        gateway = Gateway(Static())
        gateway.set_route(RouteSpec("default", "bench", (TrafficTarget("bench-00001", 100),)))
        gateway.set_revision("default", "bench-00001", 0, 300)
        await gateway.start("127.0.0.1", port)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await gateway.close(grace=0.5)

    if not profile:
        uvloop.run(main())
        return
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    uvloop.run(main())
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(18)


# -- the runner ------------------------------------------------------------------------------------
def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)  # polling a child process's listen socket; nothing to await
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _spawn(core: int, *args: str, stdout: int | None = None) -> subprocess.Popen[bytes]:
    repo = Path(__file__).resolve().parent.parent
    return subprocess.Popen(
        ["taskset", "-c", str(core), sys.executable, "-m", "benchmarks.gateway", *args],
        cwd=repo,
        stdout=stdout,
    )


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise RuntimeError(f"wrk printed a latency this runner cannot read: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    url: str, conc: int, duration: float, host: str | None, script: Path | None = None
) -> dict[str, float]:
    """One wrk run pinned to the backend's core (`script`: a wrk Lua script, e.g. a POST body):
    req/s, p50 and p99 in ms, errors."""
    args = [
        "taskset",
        "-c",
        str(BACKEND_CORE),
        "wrk",
        "-t1",
        f"-c{conc}",
        f"-d{max(1, round(duration))}s",
    ]
    args += ["--latency", "--timeout", "5s"] + (["-H", f"Host: {host}"] if host else [])
    args += (["-s", str(script)] if script else []) + [url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "errors": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 1.0 if socket_errors else 0.0,
    }


def cpu_seconds(pid: int) -> tuple[float, float]:
    """A process's user and system CPU seconds so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks gateway", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--conc", default="1,64", help="comma-separated wrk connection counts")
    parser.add_argument("--profile", action="store_true", help="profile the gateway (cProfile)")
    parser.add_argument("--serve-backend", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve-gateway", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_backend:
        serve_backend(args.serve_backend)
        return
    if args.serve_gateway:
        serve_gateway(*args.serve_gateway, profile=args.profile)
        return
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        sys.exit("the gateway benchmark needs wrk and taskset: apt-get install -y wrk util-linux")
    if (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 cores; gateway, backend and wrk share one", file=sys.stderr)

    backend_port, gateway_port = free_port(), free_port()
    backend = _spawn(BACKEND_CORE, "--serve-backend", str(backend_port))
    gateway_args = ["--serve-gateway", str(gateway_port), str(backend_port)]
    gateway = _spawn(GATEWAY_CORE, *gateway_args, *(["--profile"] if args.profile else []))
    try:
        _wait_port(backend_port)
        _wait_port(gateway_port)
        print(
            f"gateway on core {GATEWAY_CORE}; backend and wrk on core {BACKEND_CORE}; "
            f"{args.duration:g}s per run"
        )
        print(f"{'conc':>5} {'path':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
        for conc in [int(c) for c in args.conc.split(",")]:
            direct = run_wrk(f"http://127.0.0.1:{backend_port}/", conc, args.duration, None)
            user, system = cpu_seconds(gateway.pid)
            proxied = run_wrk(f"http://127.0.0.1:{gateway_port}/", conc, args.duration, HOST)
            user_after, system_after = cpu_seconds(gateway.pid)
            for name, row in (("direct", direct), ("gateway", proxied)):
                print(
                    f"{conc:>5} {name:<8} {row['rps']:>9.0f} {row['p50']:>8.3f} {row['p99']:>8.3f} "
                    f"{row['errors'] + row['socket_errors']:>6.0f}"
                )
            count = proxied["rps"] * args.duration
            print(
                f"{conc:>5} added p50: {proxied['p50'] - direct['p50']:.3f} ms; gateway CPU per "
                f"request: {(user_after - user) / count * 1e6:.1f} us user (Python, parsing), "
                f"{(system_after - system) / count * 1e6:.1f} us system (sockets, epoll); "
                f"gateway core busy {(user_after - user + system_after - system) / args.duration:.0%}"
            )
            if conc == 1:
                print(
                    f"HEADLINE HTTP/1.1 p50 through the gateway at c=1: {proxied['p50']:.3f} ms "
                    f"vs {direct['p50']:.3f} ms direct, added "
                    f"{proxied['p50'] - direct['p50']:.3f} ms (goal: under 0.3 ms added)"
                )
            else:
                print(
                    f"HEADLINE HTTP/1.1 req/s through the gateway at c={conc}: "
                    f"{proxied['rps']:.0f} vs {direct['rps']:.0f} direct "
                    f"(goal: at least 10,000 through one gateway core)"
                )
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=30)
        backend.terminate()
        backend.wait(timeout=10)


if __name__ == "__main__":
    main(sys.argv[1:])
