"""The InferenceGraph router's cost: a three-step Sequence of iris models through the router,
against calling the three models directly in turn, in one run.

    python -m benchmarks graph [--requests 2000] [--duration 10] [--concurrency 8]

Three `knserve.runtime` processes each serve an iris LogisticRegression (trained here); the
router (`python -m knserve.knative.router --graph-json …`, as the plane runs KServe's router
image) chains them with `data: $response`-free steps (each gets the request, as KServe's
sample `model-chainer` does for its second step). The client is one httpx process:

- latency at concurrency 1: the two ways alternate request by request (`--requests` each), so
  both see the same machine; the router's added latency per hop is (router - direct) / 3 at
  p50 and p99 (a "direct" request is the three calls one after the other);
- throughput at `--concurrency` 8: `--duration` seconds of each, chains per second.

Goal (issue 16): under 0.5 ms added per hop at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks._common import free_port

BODY = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}
STEPS = 3


def train(folder: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), folder / "model.joblib")


def start(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    import os

    return subprocess.Popen(
        argv,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "NO_PROXY": "*", **(env or {})},
    )


def wait_up(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling processes we started; no event to await
    raise SystemExit(f"{url} did not come up in {timeout}s")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency(
    client: httpx.AsyncClient, router: str, models: list[str], requests: int
) -> tuple[list[float], list[float]]:
    direct, routed = [], []
    for _ in range(requests):
        begin = time.perf_counter()
        for url in models:
            answer = await client.post(url, json=BODY)
            answer.raise_for_status()
        direct.append((time.perf_counter() - begin) * 1000)
        begin = time.perf_counter()
        answer = await client.post(router, json=BODY)
        answer.raise_for_status()
        routed.append((time.perf_counter() - begin) * 1000)
    return direct, routed


async def throughput(
    client: httpx.AsyncClient, urls: list[str], concurrency: int, seconds: float
) -> tuple[float, list[float]]:
    """Chains per second (a chain: `urls` called in turn) and their latencies (ms)."""
    done: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            begin = time.perf_counter()
            for url in urls:
                (await client.post(url, json=BODY)).raise_for_status()
            done.append((time.perf_counter() - begin) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(done) / (time.perf_counter() - began), done


async def measure(router: str, models: list[str], args: argparse.Namespace) -> None:
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, trust_env=False, timeout=30) as client:
        await latency(client, router, models, 50)  # warm up connections and models
        direct, routed = await latency(client, router, models, args.requests)
        print(f"\n== latency, concurrency 1 ({args.requests} chains each, interleaved)")
        print(f"{'':<28}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
        for label, samples in (
            ("direct (3 calls in turn)", direct),
            ("through the router", routed),
        ):
            print(
                f"{label:<28}{percentile(samples, 0.5):>10.3f}{percentile(samples, 0.99):>10.3f}"
                f"{statistics.fmean(samples):>10.3f}"
            )
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            added = (percentile(routed, q) - percentile(direct, q)) / STEPS
            print(f"router's added latency per hop, {name}: {added:.3f} ms")
        print(f"\n== throughput, concurrency {args.concurrency} ({args.duration:.0f} s each)")
        direct_rps, direct_ms = await throughput(client, models, args.concurrency, args.duration)
        routed_rps, routed_ms = await throughput(client, [router], args.concurrency, args.duration)
        print(f"{'':<28}{'chains/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        for label, rps, samples in (
            ("direct (3 calls in turn)", direct_rps, direct_ms),
            ("through the router", routed_rps, routed_ms),
        ):
            print(
                f"{label:<28}{rps:>10.1f}{percentile(samples, 0.5):>10.3f}"
                f"{percentile(samples, 0.99):>10.3f}"
            )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks graph")
    parser.add_argument("--requests", type=int, default=2000, help="chains per way, conc 1")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per way, conc N")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="knserve-bench-graph-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        models = []
        for index in range(STEPS):
            name = f"iris-{index}"
            train(work / name)
            port = free_port()
            argv_model = [
                sys.executable,
                "-m",
                "knserve.runtime",
                "--model-name",
                name,
                "--model-dir",
                str(work / name),
                "--http-port",
                str(port),
            ]
            processes.append(start(argv_model, work / f"{name}.log"))
            models.append(f"http://127.0.0.1:{port}/v1/models/{name}:predict")
            wait_up(f"http://127.0.0.1:{port}/v1/models/{name}")
        spec = {
            "nodes": {
                "root": {
                    "routerType": "Sequence",
                    "steps": [{"serviceUrl": url} for url in models],
                }
            }
        }
        port = free_port()
        router_argv = [sys.executable, "-m", "knserve.knative.router", "--graph-json"]
        processes.append(
            start([*router_argv, json.dumps(spec)], work / "router.log", {"PORT": str(port)})
        )
        wait_up(f"http://127.0.0.1:{port}/readyz")
        print(f"three iris models and the router on loopback; logs in {work}")
        asyncio.run(measure(f"http://127.0.0.1:{port}/", models, args))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
