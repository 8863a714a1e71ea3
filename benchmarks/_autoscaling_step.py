"""The autoscaling runner's step load: 0 → N clients → 0 on an echo Service with `target: 1`,
sampled every 0.25 s and plotted to benchmarks/out/autoscaling_step.png."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from benchmarks._autoscaling_plane import Plane, call

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out"
ECHO = """
import os, signal, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        time.sleep(float(self.path.partition("s=")[2] or 0))
        self.send_response(200); self.send_header("content-length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args): pass
server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever()
server.server_close()
"""


def step_load(plane: Plane, folder: Path, clients: int, seconds: float) -> None:
    scale = "autoscaling.knative.dev/"
    annotations = {scale + "target": "1", scale + "max-scale": "5"}
    container = {"image": "python", "command": [sys.executable, "-c", ECHO]}
    plane.apply(
        folder,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "step", "namespace": "default"},
            "spec": {
                "template": {
                    "metadata": {"annotations": annotations},
                    "spec": {"containers": [container]},
                }
            },
        },
    )
    plane.wait_spawned("step")
    plane.wait_zero("step")
    samples: list[tuple[float, int, float, float, float]] = []
    active = [0]
    lock = threading.Lock()
    codes: list[int] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop.is_set() and len(samples) < 2000:
            m = plane.revision("step")
            samples.append(
                (
                    time.monotonic() - t0,
                    active[0],
                    m.get("requests_in_flight", 0),
                    m.get("desired_pods", 0),
                    m.get("actual_pods", 0),
                )
            )
            stop.wait(0.25)

    def client(deadline: float) -> None:
        with lock:
            active[0] += 1
        while time.monotonic() < deadline:
            codes.append(call(plane.port, "step.default.localhost", "/sleep?s=0.2")[0])
        with lock:
            active[0] -= 1

    sampler = threading.Thread(target=sample)
    sampler.start()
    time.sleep(2)
    start = time.monotonic() - t0
    threads = [
        threading.Thread(target=client, args=(t0 + start + seconds,)) for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 90)
    end = time.monotonic() - t0
    plane.wait_pods("step", lambda m: m.get("actual_pods") == 0 == m.get("desired_pods"), 90)
    time.sleep(2)
    stop.set()
    sampler.join()
    plot(samples, start, end, clients)
    peak_desired = max(s[3] for s in samples)
    peak_actual = max(s[4] for s in samples)
    first_up = next((s[0] - start for s in samples if s[0] >= start and s[4] >= 1), None)
    at_peak = next((s[0] - start for s in samples if s[0] >= start and s[4] >= peak_actual), None)
    zero = next((s[0] - end for s in samples if s[0] >= end and s[4] == 0 == s[3]), None)
    failed = len(codes) - codes.count(200)
    print(f"  step: {clients} clients × {seconds:.0f} s of GET /sleep?s=0.2, target 1, max-scale 5")
    print(
        f"  requests {len(codes)}, failed {failed}; peak desired {peak_desired:.0f}, "
        f"peak actual {peak_actual:.0f}"
    )
    print(
        f"  first replica ready {_secs(first_up)}, peak actual reached {_secs(at_peak)} after the "
        f"step; back to zero {_secs(zero)} after it ended"
    )
    print(f"  plot: {OUT / 'autoscaling_step.png'}")


def _secs(value: float | None) -> str:
    return "never (within the sampling)" if value is None else f"{value:.2f} s"


def plot(
    samples: list[tuple[float, int, float, float, float]], start: float, end: float, clients: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(parents=True, exist_ok=True)
    t = [s[0] for s in samples]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    series = [
        (1, "clients (load)", "0.6", "-", 1.5),
        (2, "requests in flight (gateway)", "tab:blue", "-", 1.5),
        (4, "actual replicas", "tab:green", "-", 3.5),
        (3, "desired replicas", "tab:orange", "--", 1.8),
    ]
    for index, label, color, style, width in series:
        ax.step(
            t,
            [s[index] for s in samples],
            where="post",
            label=label,
            color=color,
            linestyle=style,
            linewidth=width,
        )
    for x in (start, end):
        ax.axvline(x, color="0.8", linestyle="--")
    ax.set(
        xlabel="seconds",
        ylabel="count",
        ylim=(0, max(clients, 5) + 1),
        title="knserve: step load, target 1, max-scale 5, stable window 6 s",
    )
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(OUT / "autoscaling_step.png", dpi=110)
    plt.close(fig)
