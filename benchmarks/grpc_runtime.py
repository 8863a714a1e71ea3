"""ModelInfer over gRPC: knserve's runtime beside KServe 0.21's and MLServer's gRPC servers.

    python -m benchmarks grpc_runtime [--quick] [--duration 5] [--conc 1,8,64] [--only a,b]

One iris LogisticRegression(max_iter=1000), trained here, one row of four FP32 per call
(`raw_input_contents`, as tritonclient sends it). Each server in turn runs alone, pinned to core
0, one process; the load generator is h2load (nghttp2's, C) on core 1, the same tool for every
target, so the client is never what limits req/s:

* knserve-grpc: `python -m knserve.runtime --grpc-port …` (knserve's defaults);
* knserve-rest: the same process's REST V2 (`POST /v2/models/iris/infer`, JSON), h2load `--h1`;
* kserve-grpc: KServe's documented custom model file (tests/support/kserve_sdk/custom_model.py)
  under `kserve.ModelServer` 0.21 with KServe's defaults (`--workers 1`; its latency log on);
* kserve-quiet-grpc: the same with `--enable_latency_logging=false --configure_logging=false`;
* mlserver-grpc: `mlserver start` 1.7.1 (knserve's engine environment for `seldonio/mlserver`,
  built on first use) with mlserver-sklearn, `parallel_workers=0` (inference in-process).

gRPC load: one HTTP/2 connection with `conc` streams in flight, as a gRPC channel carries them;
REST load: `conc` HTTP/1.1 keep-alive connections, as wrk drives them. Every target's answer is
checked once with a real gRPC client before it is loaded. Prints req/s, p50, p99 and the
server's CPU per call, then the ratios the goal names (issue 18: >= 2x KServe's gRPC req/s, and
at least knserve's own REST V2).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks._common import free_port
from benchmarks.grpc_gateway import _wait_ready

REPO = Path(__file__).resolve().parent.parent
SDK = REPO / "tests" / "support" / "kserve_sdk"
SERVER_CORE, LOAD_CORE = 0, 1
ROW = [6.8, 2.8, 4.8, 1.4]
METHOD = "/inference.GRPCInferenceService/ModelInfer"


@dataclass
class Target:
    """One server process and the endpoint to load on it."""

    name: str
    argv: list[str]
    ready_url: str
    grpc_port: int | None  # None: the REST V2 endpoint `rest_url`
    rest_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    shares: str = ""  # a target whose process this one reuses (knserve's REST beside its gRPC)


def train(folder: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), folder / "model.joblib")


def bodies(work: Path) -> tuple[Path, Path]:
    """The gRPC message (length-prefixed ModelInferRequest) and the REST V2 JSON body, on disk."""
    import numpy as np

    from knserve.runtime.grpc_v2 import grpc_predict_v2_pb2 as pb

    tensor = pb.ModelInferRequest.InferInputTensor(name="input-0", datatype="FP32", shape=[1, 4])
    raw = np.array([ROW], dtype=np.float32).tobytes()
    message = pb.ModelInferRequest(
        model_name="iris", inputs=[tensor], raw_input_contents=[raw]
    ).SerializeToString()
    grpc_body = work / "infer.grpc"
    grpc_body.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
    rest = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": ROW}]}
    rest_body = work / "infer.json"
    rest_body.write_text(json.dumps(rest))
    return grpc_body, rest_body


def mlserver_root() -> Path:
    """MLServer 1.7.1's environment, as knserve runs `seldonio/mlserver:1.7.1` (built once)."""
    from knserve.knative.supervisor.engine_env import build, built
    from knserve.knative.supervisor.engines import engine_image

    image = engine_image("mlserver", "seldonio/mlserver:1.7.1")
    assert image is not None
    root = built(image)
    if root is None:
        print("building MLServer 1.7.1's environment (once per machine, a few minutes)…")
        root = asyncio.run(build(image, progress=print))
    return root


def targets(work: Path, only: set[str] | None) -> list[Target]:
    model = work / "iris"
    wanted = (lambda n: n in only) if only else (lambda n: True)
    out: list[Target] = []
    http, grpc_port = free_port(), free_port()
    knserve = [sys.executable, "-m", "knserve.runtime", "--model-name", "iris"]
    knserve += ["--model-dir", str(model), "--http-port", str(http), "--grpc-port", str(grpc_port)]
    ready = f"http://127.0.0.1:{http}/v2/models/iris/ready"
    if wanted("knserve-grpc"):
        out.append(Target("knserve-grpc", knserve, ready, grpc_port))
    if wanted("knserve-rest"):
        rest = f"http://127.0.0.1:{http}/v2/models/iris/infer"
        shares = "knserve-grpc" if wanted("knserve-grpc") else ""
        out.append(Target("knserve-rest", knserve, ready, None, rest, shares=shares))
    for name, quiet in (
        ("kserve-grpc", []),
        ("kserve-quiet-grpc", ["--enable_latency_logging=false", "--configure_logging=false"]),
    ):
        if not wanted(name):
            continue
        http, grpc_port = free_port(), free_port()
        argv = [sys.executable, str(SDK / "kserve_loopback.py"), str(SDK / "custom_model.py")]
        argv += ["--model_name=iris", f"--model_dir={model}", "--workers=1"]
        argv += [f"--http_port={http}", f"--grpc_port={grpc_port}", "--enable_grpc=true", *quiet]
        env = {"PYTHONWARNINGS": "ignore"} if quiet else {}
        out.append(
            Target(name, argv, f"http://127.0.0.1:{http}/v2/models/iris/ready", grpc_port, env=env)
        )
    if wanted("mlserver-grpc"):
        root = mlserver_root()
        repo = work / "mlserver"
        (repo / "iris").mkdir(parents=True, exist_ok=True)
        shutil.copy(model / "model.joblib", repo / "iris" / "model.joblib")
        settings = {
            "name": "iris",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib"},
        }
        (repo / "iris" / "model-settings.json").write_text(json.dumps(settings))
        http, grpc_port = free_port(), free_port()
        env = {
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(http),
            "MLSERVER_GRPC_PORT": str(grpc_port),
            "MLSERVER_METRICS_PORT": str(free_port()),
            "MLSERVER_PARALLEL_WORKERS": "0",
            "MLSERVER_ENVIRONMENTS_DIR": str(work / "mlserver-envs"),
            "MLSERVER_METRICS_DIR": str(work / "mlserver-metrics"),
        }
        argv = [str(root / "bin" / "mlserver"), "start", str(repo)]
        out.append(
            Target(
                "mlserver-grpc",
                argv,
                f"http://127.0.0.1:{http}/v2/models/iris/ready",
                grpc_port,
                env=env,
            )
        )
    return out


def start(target: Target) -> subprocess.Popen[bytes]:
    argv = ["taskset", "-c", str(SERVER_CORE), *target.argv]
    env = {**os.environ, **target.env}
    process = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_ready(target.ready_url, timeout=120)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def check_grpc(port: int, body: Path) -> None:
    """One ModelInfer with a real gRPC client: the loaded message gets an answer with outputs."""
    import grpc

    from knserve.runtime.grpc_v2 import grpc_predict_v2_pb2 as pb
    from knserve.runtime.grpc_v2 import grpc_predict_v2_pb2_grpc as stubs

    request = pb.ModelInferRequest.FromString(body.read_bytes()[5:])
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = stubs.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    if not answer.outputs:
        raise RuntimeError(f"ModelInfer on port {port} answered without outputs: {answer}")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children."""
    import psutil

    total = 0.0
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def h2load(
    target: Target, conc: int, body: Path, duration: float, warmup: float, work: Path
) -> dict[str, float]:
    """h2load on core 1 for `duration` seconds after `warmup`: req/s, p50/p99 ms, failures."""
    log = work / f"{target.name}-{conc}.log"
    argv = ["taskset", "-c", str(LOAD_CORE), "h2load", "-t1", f"-D{duration:g}"]
    argv += [f"--warm-up-time={warmup:g}", f"--log-file={log}", f"--data={body}"]
    if target.grpc_port is not None:
        argv += ["-c1", f"-m{conc}", "-H", "content-type: application/grpc", "-H", "te: trailers"]
        argv.append(f"http://127.0.0.1:{target.grpc_port}{METHOD}")
    else:
        argv += ["--h1", f"-c{conc}", "-m1", "-H", "content-type: application/json"]
        argv.append(target.rest_url)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + warmup + 60)
    text = out.stdout
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text)
    counts = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", text)
    if out.returncode or rps is None or counts is None:
        raise RuntimeError(f"h2load failed ({out.returncode}): {text[-600:]} {out.stderr[-600:]}")
    latencies = sorted(int(line.split("\t")[2]) for line in log.read_text().splitlines())
    return {
        "rps": float(rps.group(1)),
        "done": float(counts.group(2)),
        "failed": float(int(counts.group(2)) - int(counts.group(3))),
        "p50": latencies[len(latencies) // 2] / 1000 if latencies else float("nan"),
        "p99": latencies[int(len(latencies) * 0.99)] / 1000 if latencies else float("nan"),
    }


def measure(
    found: list[Target], concs: list[int], duration: float, warmup: float, work: Path
) -> dict[tuple[str, int], dict[str, float]]:
    grpc_body, rest_body = bodies(work)
    results: dict[tuple[str, int], dict[str, float]] = {}
    running: dict[tuple[str, ...], subprocess.Popen[bytes]] = {}
    for index, target in enumerate(found):
        key = tuple(target.argv)
        process = running.get(key) or start(target)
        running[key] = process
        if target.grpc_port is not None:
            check_grpc(target.grpc_port, grpc_body)
        body = grpc_body if target.grpc_port is not None else rest_body
        for conc in concs:
            before = tree_cpu(process.pid)
            row = h2load(target, conc, body, duration, warmup, work)
            row["cpu"] = (tree_cpu(process.pid) - before) / (row["rps"] * (duration + warmup))
            results[(target.name, conc)] = row
            print(
                f"{target.name:<18} {conc:>4} {row['rps']:>9,.0f} {row['p50']:>8.2f} "
                f"{row['p99']:>8.2f} {row['cpu'] * 1e6:>9.0f} {row['failed']:>6.0f}",
                flush=True,
            )
        if all(tuple(t.argv) != key for t in found[index + 1 :]):
            stop(running.pop(key))
    return results


def report(results: dict[tuple[str, int], dict[str, float]], concs: list[int]) -> None:
    def ratio(ours: str, peer: str, conc: int) -> float | None:
        a, b = results.get((ours, conc)), results.get((peer, conc))
        return a["rps"] / b["rps"] if a and b and b["rps"] else None

    peers = ["kserve-grpc", "kserve-quiet-grpc", "mlserver-grpc", "knserve-rest"]
    print("\nknserve-grpc req/s ÷ peer: " + "  ".join(f"c={c:<6}" for c in concs))
    for peer in peers:
        cells = [ratio("knserve-grpc", peer, c) for c in concs]
        print(f"  {peer:<24}" + "  ".join(f"{x:>6.2f}x " if x else "     -  " for x in cells))
    for conc in concs:
        ours = results.get(("knserve-grpc", conc))
        for peer, goal, label in (
            ("kserve-grpc", "goal >= 2x", "KServe 0.21 gRPC"),
            ("knserve-rest", "goal >= 1x", "knserve REST V2"),
        ):
            theirs, x = results.get((peer, conc)), ratio("knserve-grpc", peer, conc)
            if ours and theirs and x:
                print(
                    f"HEADLINE grpc ModelInfer req/s c={conc} vs {label}: {ours['rps']:,.0f} vs "
                    f"{theirs['rps']:,.0f} = {x:.2f}x ({goal})"
                )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks grpc_runtime", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 s warm-up, 3 s per cell")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--warmup", type=float, default=2.0, help="discarded seconds per cell")
    parser.add_argument("--conc", default="1,8,64", help="comma-separated calls in flight")
    parser.add_argument("--only", default="", help="comma-separated targets (default: all)")
    args = parser.parse_args(argv)
    for tool, package in (("h2load", "nghttp2-client"), ("taskset", "util-linux")):
        if shutil.which(tool) is None:
            sys.exit(f"the benchmark needs {tool}: apt-get install -y {package}")
    try:
        import kserve  # noqa: F401
    except ImportError:
        sys.exit("KServe's server is a peer here: pip install -e '.[test]' brings kserve")
    duration, warmup = (3.0, 1.0) if args.quick else (args.duration, args.warmup)
    concs = [int(c) for c in args.conc.split(",")]
    only = {n for n in args.only.split(",") if n} or None
    with tempfile.TemporaryDirectory(prefix="knserve-bench-grpc-") as tmp:
        work = Path(tmp)
        train(work / "iris")
        found = targets(work, only)
        load = os.getloadavg()[0]
        print(
            f"servers on core {SERVER_CORE} one at a time, h2load on core {LOAD_CORE}; "
            f"{warmup:g}s warm-up + {duration:g}s per cell; load average {load:.2f}"
        )
        print(
            f"{'target':<18} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us':>9} {'failed':>6}"
        )
        results = measure(found, concs, duration, warmup, work)
    report(results, concs)


if __name__ == "__main__":
    main(sys.argv[1:])
