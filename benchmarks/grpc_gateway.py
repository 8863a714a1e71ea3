"""The gateway's h2c overhead: ModelInfer on knserve's runtime directly and through the gateway.

    python -m benchmarks grpc_gateway [--quick] [--duration 5] [--conc 1,8,64] [--rounds 3]

The gateway runs alone on core 0 (`benchmarks.gateway`'s, uvloop, one route to one revision);
knserve's runtime (`--grpc-port`, an iris LogisticRegression) and the load generator share core 1.
The load generator is a `grpc.aio` client keeping `conc` ModelInfer calls (raw_input_contents, one
row of four FP32) in flight on one channel, as gRPC clients do; for each concurrency it loads the
runtime directly, then through the gateway (`:authority` `bench.default.localhost`), `rounds` times
in turn (the medians are shown: on a shared machine one run alone is noise), and the table shows
req/s, p50 and p99 of both, the p50 the h2c proxy adds and the gateway's CPU per call (less what
the idle gateway spends meanwhile, measured while the runtime is loaded directly).

Goal (issue 18): under 0.3 ms added p50, as for HTTP/1.1. The client is Python too, so req/s at
high concurrency measures the client and the runtime as much as the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import free_port
from benchmarks.gateway import BACKEND_CORE, GATEWAY_CORE, HOST, _wait_port, cpu_seconds

REPO = Path(__file__).resolve().parent.parent


async def load(address: str, authority: str, conc: int, duration: float) -> dict[str, float]:
    """`conc` ModelInfer calls in flight for `duration` seconds: req/s, p50 and p99 in ms."""
    import grpc
    import numpy as np

    from knserve.runtime.grpc_v2 import grpc_predict_v2_pb2 as pb
    from knserve.runtime.grpc_v2 import grpc_predict_v2_pb2_grpc as stubs

    row = np.array([[6.8, 2.8, 4.8, 1.4]], dtype=np.float32)
    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP32", shape=[1, 4])
    request = pb.ModelInferRequest(
        model_name="iris", inputs=[tensor], raw_input_contents=[row.tobytes()]
    )
    options = [("grpc.default_authority", authority)] if authority else []
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(address, options=options) as channel:
        infer = stubs.GRPCInferenceServiceStub(channel).ModelInfer
        await infer(request)  # the connection is up before the clock starts
        deadline = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while (start := time.perf_counter()) < deadline:
                try:
                    await infer(request)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "errors": float(errors),
    }


def _train(folder: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    folder.mkdir(parents=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), folder / "model.joblib")


def _spawn(core: int, *args: str, stdout: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["taskset", "-c", str(core), sys.executable, *args], cwd=REPO, stdout=stdout
    )


def _run_load(address: str, authority: str, conc: int, duration: float) -> dict[str, float]:
    args = ["-m", "benchmarks.grpc_gateway", "--load", address, authority, str(conc), str(duration)]
    client = _spawn(BACKEND_CORE, *args, stdout=subprocess.PIPE)
    out, _ = client.communicate(timeout=duration + 60)
    result: dict[str, float] = json.loads(out)
    return result


def _wait_ready(url: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a child process's readiness; nothing to await
    raise RuntimeError(f"{url} not ready after {timeout}s")


def _median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def _measure(
    gateway: subprocess.Popen[bytes], direct: str, proxied: str, conc: int, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, float], float]:
    """Direct and gateway runs in turn, `args.rounds` times: their medians and the gateway's CPU
    seconds per call (less its idle rate, taken while the runtime is loaded directly)."""
    directs, gateways, per_call = [], [], []
    for _ in range(args.rounds):
        idle = sum(cpu_seconds(gateway.pid))
        directs.append(_run_load(direct, "", conc, args.duration))
        idle = (sum(cpu_seconds(gateway.pid)) - idle) / args.duration
        before = sum(cpu_seconds(gateway.pid))
        row = _run_load(proxied, HOST, conc, args.duration)
        busy = sum(cpu_seconds(gateway.pid)) - before - idle * args.duration
        gateways.append(row)
        per_call.append(max(busy, 0.0) / max(row["rps"] * args.duration, 1.0))
    return _median(directs), _median(gateways), statistics.median(per_call)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks grpc_gateway", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one round of 2 s runs")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--conc", default="1,8,64", help="comma-separated calls in flight")
    parser.add_argument("--rounds", type=int, default=3, help="direct and gateway runs in turn")
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.rounds = 2.0, 1
    if args.load:
        address, authority, conc, duration = args.load
        print(json.dumps(asyncio.run(load(address, authority, int(conc), float(duration)))))
        return
    if shutil.which("taskset") is None:
        sys.exit(
            "the benchmark pins processes to cores with taskset: apt-get install -y util-linux"
        )
    http_port, grpc_port, gateway_port = free_port(), free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        _train(Path(tmp) / "iris")
        runtime = _spawn(
            BACKEND_CORE,
            *("-m", "knserve.runtime", "--model-name", "iris", "--model-dir", f"{tmp}/iris"),
            *("--http-port", str(http_port), "--grpc-port", str(grpc_port)),
        )
        gateway_args = ["--serve-gateway", str(gateway_port), str(grpc_port)]
        gateway = _spawn(GATEWAY_CORE, "-m", "benchmarks.gateway", *gateway_args)
        try:
            _wait_ready(f"http://127.0.0.1:{http_port}/v2/models/iris/ready")
            _wait_port(gateway_port)
            print(
                f"gateway on core {GATEWAY_CORE}; runtime and client on core {BACKEND_CORE}; "
                f"{args.duration:g}s per run, medians of {args.rounds} rounds"
            )
            print(f"{'conc':>5} {'path':<8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
            first: tuple[dict[str, float], dict[str, float]] | None = None
            for conc in [int(c) for c in args.conc.split(",")]:
                direct, proxied, per_call = _measure(
                    gateway, f"127.0.0.1:{grpc_port}", f"127.0.0.1:{gateway_port}", conc, args
                )
                first = first or (direct, proxied)
                for name, row in (("direct", direct), ("gateway", proxied)):
                    print(
                        f"{conc:>5} {name:<8} {row['rps']:>9.0f} {row['p50']:>8.3f} "
                        f"{row['p99']:>8.3f} {row['errors']:>6.0f}"
                    )
                print(
                    f"{conc:>5} added p50: {proxied['p50'] - direct['p50']:.3f} ms; gateway CPU "
                    f"per call: {per_call * 1e6:.0f} us"
                )
            if first is not None:
                direct, proxied = first
                print(
                    f"HEADLINE gRPC p50 through the gateway's h2c proxy at c={args.conc.split(',')[0]}"
                    f": {proxied['p50']:.3f} ms vs {direct['p50']:.3f} ms direct = "
                    f"{proxied['p50'] / direct['p50']:.2f}x (goal: under 0.3 ms added, as for "
                    f"HTTP/1.1; added {proxied['p50'] - direct['p50']:.3f} ms)"
                )
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=30)
            runtime.terminate()
            runtime.wait(timeout=30)


if __name__ == "__main__":
    main(sys.argv[1:])
