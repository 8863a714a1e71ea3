"""Scale from zero and a step load on the local plane, beside KServe started cold, in one run.

    python -m benchmarks autoscaling [--quick] [--runs 20] [--clients 6] [--step-seconds 12]
                                     [--step-only]

Starts `knserve up` on free loopback ports with Knative's windows shrunk to seconds, deploys a
scikit-learn iris InferenceService (`minReplicas: 0`) and an `http` function (`knserve func create`
+ `knserve func deploy`), and times the first request through the gateway after each has scaled to
zero (`actual_pods` 0 on `/metrics` and the old replica's process gone), with the replica's RSS and
USS. In the same run: KServe's Python model server (the anchors' `kserve_iris.py`) and our
`knserve.runtime` started cold outside the plane, launch → first 200 on predict, polled every 10 ms.
Then a step load (0 → N clients → 0) on a CPU-burning Service, scaled once by the KPA (`target: 1`)
and once by Knative's HPA class (CPU, 50 %), sampled every 0.25 s and plotted side by side to
benchmarks/out/autoscaling_step.png (`--step-only` runs just that). Numbers are printed, never
asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._autoscaling_plane import (
    FAST,
    ZYGOTE,
    Plane,
    alive,
    call,
    memory,
    stats,
    stop_group,
)
from benchmarks._autoscaling_step import step_load
from benchmarks._common import free_port
from benchmarks.runtime import anchors_dir, harness_dir

V1_BODY = json.dumps({"instances": [[6.8, 2.8, 4.8, 1.4]]}).encode()


def train_iris(folder: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True)
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), folder / "model.joblib")


def iris_isvc(model_dir: Path) -> dict[str, Any]:
    """The scikit-learn iris InferenceService scaled to zero when idle (`minReplicas: 0`)."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "default"},
        "spec": {
            "predictor": {
                "minReplicas": 0,
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{model_dir}"},
            }
        },
    }


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
    zygote = ZYGOTE.findall(plane.log())
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


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks autoscaling")
    parser.add_argument("--quick", action="store_true", help="3 cold starts each, an 8 s step")
    parser.add_argument("--runs", type=int, help="cold starts per target (default 20, quick 3)")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--step-seconds", type=float, help="default 12 (quick 8)")
    parser.add_argument("--step-only", action="store_true", help="only the KPA/HPA step load")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 20)
    step_seconds = args.step_seconds or (8.0 if args.quick else 12.0)
    root = Path(tempfile.mkdtemp(prefix="knserve-autoscaling-"))
    env = {**os.environ, "KNSERVE_FUNCTIONS_HOME": str(root / "functions-home")}
    print(f"work folder {root}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    train_iris(root / "iris")
    plane = Plane(root, env)
    if args.step_only:
        try:
            print(f"knserve up: gateway :{plane.port}, API :{plane.api_port}, autoscaler {FAST}")
            print("\n== step load")
            step_load(plane, root, args.clients, step_seconds)
        finally:
            plane.close()
        return
    try:
        print(f"knserve up: gateway :{plane.port}, API :{plane.api_port}, autoscaler {FAST}")
        plane.apply(root, iris_isvc(root / "iris"))
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
