"""Scale from zero and a step load on the local plane, beside KServe started cold, in one run.

    python -m benchmarks autoscaling [--quick] [--runs 20] [--clients 6] [--step-seconds 12]

Starts `knserve up` on free loopback ports with Knative's windows shrunk to seconds, deploys a
scikit-learn iris InferenceService (`minReplicas: 0`) and an `http` function (`knserve func create`
+ `knserve func deploy`), and times the first request through the gateway after each has scaled to
zero (`actual_pods` 0 on `/metrics` and the old replica's process gone), with the replica's RSS and
USS. In the same run: KServe's Python model server (the anchors' `kserve_iris.py`) and our
`knserve.runtime` started cold outside the plane, launch → first 200 on predict, polled every 10 ms.
Then a step load (0 → N clients → 0) on an echo Service with `target: 1`, sampled every 0.25 s,
plotted to benchmarks/out/autoscaling_step.png. Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.runtime import anchors_dir, harness_dir

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out"
FAST = ["stable-window=6s", "scale-to-zero-grace-period=1s", "tick-interval=1s"]
V1_BODY = json.dumps({"instances": [[6.8, 2.8, 4.8, 1.4]]}).encode()
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
_METRIC = re.compile(r'^knserve_revision_(\w+)\{[^}]*revision="([^"]+)"[^}]*\} (\S+)$', re.M)
_ZYGOTE = re.compile(r"zygote ready \(pid (\d+)\)")
_SPAWN = re.compile(r"^(\S+ \S+) INFO \S+: revision \S+/(\S+) replica \d+: pid (\d+)", re.M)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(port: int, host: str | None, path: str, body: bytes | None = None) -> tuple[int, float]:
    """One request on a fresh connection: (status, seconds); status 0 when it could not connect."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Content-Type": "application/json"} | ({"Host": host} if host else {})
        conn.request("POST" if body else "GET", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except OSError:
        return 0, time.perf_counter() - started
    finally:
        conn.close()


def memory(pid: int) -> str:
    """RSS, PSS and USS: psutil's memory_full_info() when installed, else /proc smaps_rollup."""
    try:
        import psutil

        info = psutil.Process(pid).memory_full_info()
        rss, pss, uss = info.rss / 2**20, info.pss / 2**20, info.uss / 2**20
    except ImportError:
        try:
            kib = {}
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
                key, _, value = line.partition(":")
                kib[key] = int(value.split()[0])
        except OSError as exc:
            return f"memory unavailable ({exc})"
        rss, pss = kib["Rss"] / 1024, kib["Pss"] / 1024
        uss = (kib["Private_Clean"] + kib["Private_Dirty"]) / 1024
    except Exception as exc:  # psutil.NoSuchProcess, AccessDenied
        return f"memory unavailable ({exc!r})"
    return f"RSS {rss:.1f} MiB, PSS {pss:.1f} MiB, USS {uss:.1f} MiB"


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def stop_group(proc: subprocess.Popen[bytes], grace: float, term_group: bool = True) -> None:
    """SIGTERM the process (or its group: start_new_session), SIGKILL the group after `grace` s."""
    with contextlib.suppress(ProcessLookupError):
        (os.killpg if term_group else os.kill)(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def stats(values: list[float]) -> str:
    if not values:
        return "no samples"
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"min {ms[0]:7.1f}  median {statistics.median(ms):7.1f}  p95 {p95:7.1f} ms (n={len(ms)})"


class Plane:
    """`knserve up` in its own process group, with its log, metrics and CLI."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.env, self.port, self.api_port = env, free_port(), free_port()
        self.log_path = root / "up.log"
        scaler = [a for kv in FAST for a in ("--autoscaler", kv)]
        argv = [
            sys.executable,
            "-m",
            "knserve.knative.cli",
            "up",
            "--data-dir",
            str(root / "data"),
            "--port",
            str(self.port),
            "--api-port",
            str(self.api_port),
            *scaler,
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=root,
            )
        for _ in range(600):  # ≤ 30 s
            if self.proc.poll() is not None or call(self.api_port, None, "/healthz")[0] == 200:
                break
            time.sleep(0.05)
        if self.proc.poll() is not None:
            raise RuntimeError(f"knserve up exited:\n{self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli(self, *args: str) -> str:
        env = {**self.env, "KNSERVE_API": f"http://127.0.0.1:{self.api_port}"}
        argv = [sys.executable, "-m", "knserve.knative.cli", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"knserve {' '.join(args)}: {done.stderr}{done.stdout}")
        return done.stdout

    def apply(self, folder: Path, doc: dict[str, Any]) -> None:
        path = folder / f"{doc['metadata']['name']}.yaml"
        path.write_text(json.dumps(doc))  # JSON is YAML
        self.cli("apply", "-f", str(path))

    def metrics(self) -> dict[str, dict[str, float]]:
        url = f"http://127.0.0.1:{self.api_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        out: dict[str, dict[str, float]] = {}
        for name, revision, value in _METRIC.findall(text):
            out.setdefault(revision, {})[name] = float(value)
        return out

    def revision(self, prefix: str) -> dict[str, float]:
        found = {r: m for r, m in self.metrics().items() if r.startswith(prefix + "-")}
        return found[max(found)] if found else {}

    def spawned(self, revision_prefix: str, since: int = 0) -> list[tuple[float, int]]:
        """(wall time, pid) of each replica the supervisor started for the revision."""
        return [
            (_stamp(t), int(pid))
            for t, rev, pid in _SPAWN.findall(self.log()[since:])
            if rev.startswith(revision_prefix + "-")
        ]

    def wait_pods(
        self, prefix: str, test: Callable[[dict[str, float]], bool], limit: float
    ) -> bool:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and self.proc.poll() is None:
            if test(self.revision(prefix)):
                return True
            time.sleep(0.1)
        print(f"  ! {prefix}: pods never as wanted within {limit:.0f}s: {self.revision(prefix)}")
        return False

    def wait_spawned(self, prefix: str, limit: float = 120) -> None:
        """Until the supervisor has started a first replica (the revision exists and ran)."""
        deadline = time.monotonic() + limit
        while not self.spawned(prefix) and time.monotonic() < deadline:
            time.sleep(0.1)

    def wait_zero(self, prefix: str, limit: float = 60) -> None:
        """Scaled to zero on /metrics, and every replica process it had has exited."""
        if self.wait_pods(
            prefix, lambda m: m.get("actual_pods") == 0 == m.get("desired_pods"), limit
        ):
            deadline = time.monotonic() + 15
            while any(alive(p) for _, p in self.spawned(prefix)) and time.monotonic() < deadline:
                time.sleep(0.02)

    def close(self) -> None:
        log = self.log()
        pids = [p for _, p in self.spawned("")] + [int(p) for p in _ZYGOTE.findall(log)]
        stop_group(self.proc, 30, term_group=False)  # the plane drains its replicas and zygote
        for pid in pids:  # they have their own sessions: only a plane that hung leaves them
            if alive(pid):
                print(f"  ! pid {pid} (replica or zygote) outlived the plane; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def train_iris(folder: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True)
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), folder / "model.joblib")


def cold_through_plane(
    plane: Plane, targets: list[tuple[str, str, str, bytes | None]], runs: int
) -> None:
    """Per round: wait until every target is at zero, then time one request to each."""
    times: dict[str, list[float]] = {t[0]: [] for t in targets}
    phases: dict[str, list[tuple[float, float]]] = {t[0]: [] for t in targets}
    for run in range(runs):
        for prefix, _, _, _ in targets:
            plane.wait_zero(prefix)
        for prefix, host, path, body in targets:
            offset, sent = len(plane.log()), time.time()
            status, seconds = call(plane.port, host, path, body)
            if status != 200:
                print(f"  ! {prefix} run {run + 1}: status {status} after {seconds * 1000:.0f} ms")
                continue
            times[prefix].append(seconds)
            spawned = plane.spawned(prefix, offset)
            if spawned:  # request sent → replica spawned → answered
                phases[prefix].append((spawned[0][0] - sent, sent + seconds - spawned[0][0]))
            if run == 0 and spawned:
                time.sleep(0.5)
                print(f"  {prefix} replica pid {spawned[0][1]}: {memory(spawned[0][1])}")
    zygote = _ZYGOTE.findall(plane.log())
    if zygote and alive(int(zygote[-1])):  # the warm template replicas are forked from
        print(f"  zygote pid {zygote[-1]}: {memory(int(zygote[-1]))}")
    for prefix, host, _, _ in targets:
        print(f"  {host:28} first request at zero: {stats(times[prefix])}")
        if phases[prefix]:
            spawn = statistics.median(p[0] for p in phases[prefix]) * 1000
            rest = statistics.median(p[1] for p in phases[prefix]) * 1000
            print(
                f"  {'':28} median: request → replica spawned {spawn:.0f} ms, "
                f"spawned → answered {rest:.0f} ms (log timestamps, ms resolution)"
            )
    predictor = times[targets[0][0]]
    if predictor:
        median = statistics.median(predictor) * 1000
        verdict = "met" if median < 100 else "NOT met"
        print(f"  goal: predictor median < 100 ms through the gateway — {median:.0f} ms, {verdict}")


def cold_process(name: str, argv: list[str], port: int, path: str, runs: int, log: Path) -> None:
    """Launch → first 200 on predict, polled every 10 ms on fresh connections, `runs` times."""
    times: list[float] = []
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for run in range(runs):
        with log.open("ab") as out:
            started = time.perf_counter()
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        try:
            while time.perf_counter() - started < 60 and proc.poll() is None:
                if call(port, None, path, V1_BODY)[0] == 200:
                    times.append(time.perf_counter() - started)
                    break
                time.sleep(0.01)
            else:
                print(f"  ! {name} run {run + 1}: no 200 (exit {proc.poll()}); see {log}")
            if run == 0 and times:
                time.sleep(0.5)
                print(f"  {name} pid {proc.pid}: {memory(proc.pid)}")
        finally:
            stop_group(proc, 10)
    print(f"  {name:28} launch → first predict: {stats(times)}")


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


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks autoscaling")
    parser.add_argument("--quick", action="store_true", help="3 cold starts each, an 8 s step")
    parser.add_argument("--runs", type=int, help="cold starts per target (default 20, quick 3)")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--step-seconds", type=float, help="default 12 (quick 8)")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 20)
    step_seconds = args.step_seconds or (8.0 if args.quick else 12.0)
    root = Path(tempfile.mkdtemp(prefix="knserve-autoscaling-"))
    env = {**os.environ, "KNSERVE_FUNCTIONS_HOME": str(root / "functions-home")}
    print(f"work folder {root}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    train_iris(root / "iris")
    plane = Plane(root, env)
    try:
        print(f"knserve up: gateway :{plane.port}, API :{plane.api_port}, autoscaler {FAST}")
        plane.apply(
            root,
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "metadata": {"name": "iris", "namespace": "default"},
                "spec": {
                    "predictor": {
                        "minReplicas": 0,
                        "model": {
                            "modelFormat": {"name": "sklearn"},
                            "storageUri": f"file://{root / 'iris'}",
                        },
                    }
                },
            },
        )
        plane.cli("func", "create", "-t", "http", "-p", str(root / "hello"), "hello")
        plane.cli("func", "deploy", "-p", str(root / "hello"))
        plane.wait_spawned("iris-predictor")
        print(f"\n== cold start through the gateway ({runs} runs each)")
        cold_through_plane(
            plane,
            [
                ("iris-predictor", "iris.default.localhost", "/v1/models/iris:predict", V1_BODY),
                ("hello", "hello.default.localhost", "/", None),
            ],
            runs,
        )
        print("\n== step load")
        step_load(plane, root, args.clients, step_seconds)
    finally:
        plane.close()
    print(f"\n== started cold outside the plane ({runs} runs each; launch → first 200)")
    port = free_port()
    ours = [
        sys.executable,
        "-m",
        "knserve.runtime",
        "--model-name",
        "iris",
        "--model-dir",
        str(root / "iris"),
        "--http-port",
        str(port),
    ]
    cold_process(
        "knserve.runtime (no plane)",
        ours,
        port,
        "/v1/models/iris:predict",
        runs,
        root / "runtime.log",
    )
    harness, anchors = harness_dir(), anchors_dir()
    kserve_py = anchors / "venv-kserve" / "bin" / "python"
    if harness is None or not kserve_py.exists():
        print(f"  skipped KServe: no harness or no {kserve_py} (run shared/bench/setup.sh)")
    else:
        port = free_port()
        peer = [
            str(kserve_py),
            str(harness / "kserve_iris.py"),
            "--model_name",
            "iris",
            "--model_dir",
            str(anchors / "models" / "sklearn-iris"),
            "--http_port",
            str(port),
            "--workers",
            "1",
            "--enable_grpc",
            "false",
        ]
        cold_process(
            "KServe (kserve_iris.py)",
            peer,
            port,
            "/v1/models/iris:predict",
            runs,
            root / "kserve.log",
        )
    print(f"\nlogs: {root} (up.log, data/logs/, runtime.log, kserve.log)")
