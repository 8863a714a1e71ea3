"""The autoscaling runner's step load (0 → N clients → 0) on a CPU-burning model, twice in one
run: scaled by Knative's KPA (concurrency, `target: 1`) and by Knative's HPA class (CPU, 50 % of
one core per replica), both with max-scale 5. Sampled every 0.25 s from `/metrics` (load, requests
in flight, CPU of the replicas, desired and actual replicas) and plotted side by side to
benchmarks/out/autoscaling_step.png."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._autoscaling_plane import Plane, call

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out"
# One request is BURN_MS of the replica thread's CPU time: a real, bounded load.
BURN_MS = 40
BURNER = """
import os, signal, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        until = time.thread_time() + float(self.path.partition("ms=")[2] or 0) / 1000
        while time.thread_time() < until:
            sum(i * i for i in range(500))
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args): pass
server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever()
server.server_close()
"""
A = "autoscaling.knative.dev/"
RUNS = {
    # name: (annotations, what it scales on, the replicas it rests at)
    "kpa": ({A + "target": "1", A + "max-scale": "5"}, "concurrency, target 1", 0),
    "hpa": (
        {
            A + "class": "hpa.autoscaling.knative.dev",
            A + "metric": "cpu",
            A + "target": "50",
            A + "max-scale": "5",
        },
        "CPU, target 50 % of a core",
        1,
    ),
}


@dataclass
class Run:
    """One class's step: samples of (t, clients, in flight, desired, actual, CPU cores)."""

    name: str
    start: float = 0.0
    end: float = 0.0
    samples: list[tuple[float, ...]] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)


def step_load(plane: Plane, folder: Path, clients: int, seconds: float) -> None:
    runs = [_step(plane, folder, name, clients, seconds) for name in RUNS]
    for run in runs:
        _report(run, clients, seconds)
    plot(runs, clients)
    print(f"  plot: {OUT / 'autoscaling_step.png'}")


def _step(plane: Plane, folder: Path, name: str, clients: int, seconds: float) -> Run:
    annotations, _, rest = RUNS[name]
    service = f"step-{name}"
    container = {"image": "python", "command": [sys.executable, "-c", BURNER]}
    plane.apply(
        folder,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": "default"},
            "spec": {
                "template": {
                    "metadata": {"annotations": annotations},
                    "spec": {"containers": [container]},
                }
            },
        },
    )
    plane.wait_spawned(service)
    settled = lambda m: m.get("actual_pods") == rest == m.get("desired_pods")  # noqa: E731
    plane.wait_pods(service, settled, 90)
    run, active, lock, stop = Run(name), [0], threading.Lock(), threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop.is_set() and len(run.samples) < 4000:
            m = plane.revision(service)
            run.samples.append(
                (
                    time.monotonic() - t0,
                    active[0],
                    m.get("requests_in_flight", 0),
                    m.get("desired_pods", 0),
                    m.get("actual_pods", 0),
                    m.get("cpu_millicores", 0) / 1000,
                )
            )
            stop.wait(0.25)

    def client(deadline: float) -> None:
        with lock:
            active[0] += 1
        host = f"{service}.default.localhost"
        while time.monotonic() < deadline:
            run.codes.append(call(plane.port, host, f"/burn?ms={BURN_MS}")[0])
        with lock:
            active[0] -= 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    time.sleep(2)
    run.start = time.monotonic() - t0
    deadline = t0 + run.start + seconds
    threads = [threading.Thread(target=client, args=(deadline,)) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 90)
    run.end = time.monotonic() - t0
    plane.wait_pods(service, settled, 120)
    time.sleep(2)
    stop.set()
    sampler.join()
    return run


def _report(run: Run, clients: int, seconds: float) -> None:
    _, scales_on, rest = RUNS[run.name]
    s, start, end = run.samples, run.start, run.end
    peak_desired = max(x[3] for x in s)
    peak_actual = max(x[4] for x in s)
    first_up = next((x[0] - start for x in s if x[0] >= start and x[4] > max(rest, 0)), None)
    at_peak = next((x[0] - start for x in s if x[0] >= start and x[4] >= peak_actual), None)
    back = next((x[0] - end for x in s if x[0] >= end and x[4] == rest == x[3]), None)
    loaded = [x for x in s if start + 2 <= x[0] <= end]
    cpu = sum(x[5] for x in loaded) / len(loaded) if loaded else 0.0
    replicas = sum(x[4] for x in loaded) / len(loaded) if loaded else 0.0
    failed = len(run.codes) - run.codes.count(200)
    rate = len(run.codes) / seconds
    print(
        f"  {run.name.upper()} ({scales_on}, max-scale 5): {clients} clients × {seconds:.0f} s "
        f"of GET /burn?ms={BURN_MS}"
    )
    print(
        f"    requests {len(run.codes)} ({rate:.1f}/s), failed {failed}; peak desired "
        f"{peak_desired:.0f}, peak actual {peak_actual:.0f}; under load: mean CPU {cpu:.2f} "
        f"cores, mean ready replicas {replicas:.1f}"
    )
    print(
        f"    first replica beyond {rest} ready {_secs(first_up)} after the step, peak actual "
        f"{_secs(at_peak)} after it; back to {rest} {_secs(back)} after it ended"
    )


def _secs(value: float | None) -> str:
    return "never (within the sampling)" if value is None else f"{value:.2f} s"


def plot(runs: list[Run], clients: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(runs), figsize=(14, 4.8), sharey=True)
    series: list[tuple[int, str, Any, str, float]] = [
        (1, "clients (load)", "0.7", "-", 5.0),
        (2, "requests in flight (gateway)", "tab:blue", "-", 1.2),
        (5, "CPU of the replicas (cores)", "tab:red", "-", 1.5),
        (4, "actual replicas", "tab:green", "-", 3.5),
        (3, "desired replicas", "tab:orange", "--", 1.8),
    ]
    for ax, run in zip(axes, runs, strict=True):
        t = [x[0] for x in run.samples]
        for index, label, color, style, width in series:
            ys = [x[index] for x in run.samples]
            ax.step(t, ys, where="post", label=label, color=color, linestyle=style, linewidth=width)
        for x in (run.start, run.end):
            ax.axvline(x, color="0.8", linestyle="--")
        ax.set(
            xlabel="seconds",
            ylim=(0, max(clients, 5) + 1),
            title=f"{run.name.upper()}: {RUNS[run.name][1]}, max-scale 5",
        )
    axes[0].set_ylabel("count / cores")
    axes[-1].legend(loc="upper right", fontsize="small")
    fig.suptitle(
        f"knserve: the same step load ({clients} clients, {BURN_MS} ms of CPU per request), "
        "KPA vs HPA class"
    )
    fig.tight_layout()
    fig.savefig(OUT / "autoscaling_step.png", dpi=110)
    plt.close(fig)
