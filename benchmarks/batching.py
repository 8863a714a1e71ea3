"""Dynamic batching off and on, against MLServer's adaptive batching and the bare-uvicorn ceiling.

    python -m benchmarks batching [--quick] [--conc 1,8,64] [--max-batch-size 64]
        [--max-latency-ms 2] [--models mlp,iris] [--width 512] [--nice N] [--keep]

One run, side by side. Two models are made in a temporary folder: a TorchScript MLP (64 FP32
features, 3 hidden layers of `--width` 512, 10 outputs; 20 Adam steps on synthetic data) and iris
`LogisticRegression(max_iter=1000)`, trained by each server's own Python so that no pickle
crosses scikit-learn versions. Each target is a real server process on a free 127.0.0.1 port,
pinned to core 0 ($SERVER_CPU) and stopped by PID:

- knserve with batching off, and on (`--max-batch-size 64 --max-latency-ms 2` by default);
- MLServer 1.7.1 (mlserver-sklearn; `parallel_workers=0`, `debug=false`, httptools) without and
  with adaptive batching (`max_batch_size`, `max_batch_time` in model-settings.json, same values).
  MLServer has no built-in TorchScript runtime, so the MLP is served by knserve only;
- the harness's bare ASGI app on uvicorn (V1 iris): the ceiling of the runtime issue.

Load is the shared harness's (`shared/bench/bench.py load`: wrk -t1 on core 1, closed loop, one
V2 body, warm-up discarded). Every server starts first and stays up; the cells are taken
concurrency by concurrency across all targets, so batched and unbatched are measured seconds
apart under the same outside load, and the MLP's two cells at the top concurrency are run
`--runs` times (3) for the headline ratio's spread. knserve's batch counters (`/metrics`) are
read around each cell: rows per model call, and KServe's
`request_predict_seconds`, which on the batched path is the time from joining a batch to its
answer. The last table sets that against the whole request and against Little's law (c clients
at r req/s average c / r per request), to show where a batched request's time goes. Peers come
from the harness's venvs under $ANCHORS_DIR (its setup.sh); a missing peer is skipped and said
so. `--nice -10` (root only) runs every server and wrk at that priority, set on each one's
session autogroup too (where plain nice has no effect against other sessions), to shield all
targets alike from other work on a shared machine. A full run takes about 7 minutes, --quick
about 3 (`--models mlp --conc 64 --quick`, the headline alone, under 1). Numbers are printed,
never asserted; the last line is the HEADLINE.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from benchmarks._batching_report import report
from benchmarks._batching_servers import (
    SERVER_CPU,
    TRAIN_IRIS,
    Target,
    ceiling_target,
    knserve_targets,
    mlserver_targets,
    spawn,
    start,
    stop,
)
from benchmarks.runtime import anchors_dir, harness_dir, loadavg

FEATURES, CLASSES = 64, 10
COUNTER = re.compile(r"^knserve_(batches|batched_requests)(?:_total)?\{[^}]*\} (\S+)", re.M)
# KServe's predict histogram: on the batched path, the time from joining a batch to its answer.
PREDICT = re.compile(r"^request_predict_seconds_(sum|count)\{[^}]*\} (\S+)", re.M)

# Run pinned to the server core: median time of one call of knserve's own predictor.
TIME_PREDICT = """import json, statistics, sys, time
import numpy as np
from knserve.runtime.formats import load_predictor
out = {}
for name, folder, features in json.loads(sys.argv[1]):
    predictor = load_predictor(folder)
    for rows in json.loads(sys.argv[2]):
        x = np.random.default_rng(0).random((rows, features), dtype=np.float32)
        times = []
        for i in range(220):
            t = time.perf_counter()
            predictor.predict([x])
            times.append(time.perf_counter() - t)
        out[f"{name}:{rows}"] = statistics.median(times[20:]) * 1000
print(json.dumps(out))
"""


def train_mlp(folder: Path, width: int) -> None:
    import torch

    torch.manual_seed(0)
    layers: list[torch.nn.Module] = [torch.nn.Linear(FEATURES, width), torch.nn.ReLU()]
    for _ in range(2):
        layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(width, CLASSES))
    x, y = torch.randn(512, FEATURES), torch.randint(0, CLASSES, (512,))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(20):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        optimiser.step()
    folder.mkdir(parents=True)
    torch.jit.save(torch.jit.script(net.eval()), str(folder / "model.pt"))


def v2_body(path: Path, row: list[float]) -> Path:
    inputs = [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP32", "data": row}]
    path.write_text(json.dumps({"inputs": inputs}))
    return path


def batch_counters(url: str | None) -> dict[str, float]:
    if url is None:
        return {}
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    found = {k: float(v) for k, v in COUNTER.findall(text)}
    found.update((f"predict_{k}", float(v)) for k, v in PREDICT.findall(text))
    return found


def run_cell(
    harness: Path,
    target: Target,
    pid: int,
    conc: int,
    timing: tuple[int, int],
    out: Path,
    nice: int,
) -> dict:
    """One harness load cell (warm-up, then measured); its record plus knserve's rows per call."""
    duration, warmup = timing
    extra = f"name={target.name},url={target.url},body={target.body},pid={pid}"
    cmd = [
        sys.executable,
        str(harness / "bench.py"),
        "--out",
        str(out),
        "load",
        "--only",
        "none",
        "--conc",
        str(conc),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--repeats",
        "1",
        "--extra",
        extra,
    ]
    before = batch_counters(target.metrics_url)
    bench = spawn(cmd, nice, stdout=subprocess.DEVNULL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        bench.wait(timeout=duration + warmup + 120)
    stop(bench)  # a no-op once it has exited; else it and its wrk, by PID
    after = batch_counters(target.metrics_url)
    recs = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    found = [r for r in recs if r.get("type") == "load" and r.get("server") == target.name]
    rec = dict(found[-1]) if found and found[-1].get("conc") == conc else {}
    calls = after.get("batches", 0) - before.get("batches", 0)
    if rec and calls > 0:  # counts the warm-up too: same concurrency, same batches
        rec["rows_per_call"] = (after["batched_requests"] - before["batched_requests"]) / calls
        answered = after["predict_count"] - before["predict_count"]
        if answered > 0:
            rec["batcher_ms"] = (after["predict_sum"] - before["predict_sum"]) / answered * 1000
    return rec


def spread(runs: list[dict[str, float]], top: int, load_before: str) -> None:
    """The MLP's batched / unbatched ratio at the top concurrency in each run, and the HEADLINE."""
    on, off = "mlp-knserve-on", "mlp-knserve-off"
    pairs = [(r[on], r[off]) for r in runs if r.get(on) and r.get(off)]
    if not pairs:
        return
    ratios = [a / b for a, b in pairs]
    print(
        f"\nmlp batched / unbatched at c={top}, run by run: "
        + ", ".join(f"{a:,.0f} / {b:,.0f} = {a / b:.2f}×" for a, b in pairs)
    )
    mid = statistics.median(ratios)
    print(
        f"HEADLINE batching TorchScript MLP 3x512 c={top} req/s: "
        f"{statistics.median(a for a, _ in pairs):,.0f} batched vs "
        f"{statistics.median(b for _, b in pairs):,.0f} unbatched = {mid:.2f} (median of "
        f"{len(ratios)} runs, range {min(ratios):.2f}–{max(ratios):.2f}; goal >= 3; load "
        f"{load_before} before, {loadavg()} after, 2 cores)"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks batching")
    parser.add_argument("--quick", action="store_true", help="1 s warm-up, 4 s per cell")
    parser.add_argument("--conc", default="1,8,64")
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per cell")
    parser.add_argument("--max-batch-size", type=int, default=64)
    parser.add_argument("--max-latency-ms", type=float, default=2.0)
    parser.add_argument("--models", default="mlp,iris", help="which of mlp,iris to run")
    parser.add_argument("--width", type=int, default=512, help="the MLP's hidden width")
    parser.add_argument(
        "--nice", type=int, default=0, help="niceness of servers and wrk (<0: root)"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of the MLP's cells at the top concurrency"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, raw)")
    args = parser.parse_args(argv)
    harness = harness_dir()
    if harness is None or shutil.which("wrk") is None:
        print(
            "skipped: needs the shared bench harness (shared/bench/bench.py, or "
            "$KNSERVE_BENCH_HARNESS) and wrk (its setup.sh installs both)"
        )
        return
    concs = [int(c) for c in args.conc.split(",")]
    models = args.models.split(",")
    timing = (4, 1) if args.quick else (args.duration, 3)
    batch, latency_ms, anchors = args.max_batch_size, args.max_latency_ms, anchors_dir()
    tmp = Path(tempfile.mkdtemp(prefix="knserve-batching-"))
    (tmp / "logs").mkdir()
    print(
        f"batching: max_batch_size={batch}, max_latency_ms={latency_ms:g} (knserve and MLServer); "
        f"MLP 64→3×{args.width}→10; {timing[1]} s warm-up + {timing[0]} s per cell; "
        f"servers on core {SERVER_CPU}, wrk on the other; work folder {tmp}",
        flush=True,
    )
    load_before = loadavg()
    rng = random.Random(0)
    row = [round(rng.uniform(-2, 2), 4) for _ in range(FEATURES)]
    bodies = {
        "mlp": v2_body(tmp / "mlp.json", row),
        "iris": v2_body(tmp / "iris.json", [6.8, 2.8, 4.8, 1.4]),
    }
    train_mlp(tmp / "mlp", args.width)
    (tmp / "iris").mkdir()
    subprocess.run([sys.executable, "-c", TRAIN_IRIS, str(tmp / "iris/model.joblib")], check=True)
    targets = [t for m in models for t in knserve_targets(tmp, m, bodies[m], batch, latency_ms)]
    if "mlp" in models:
        print(
            "mlp × MLServer: not run — MLServer ships no TorchScript runtime (only sklearn, "
            "xgboost, lightgbm, mlflow, …); serving torch there needs a custom MLModel"
        )
    if "iris" in models:
        if (anchors / "venv-mlserver/bin/mlserver").exists():
            targets += mlserver_targets(tmp, anchors, bodies["iris"], batch, latency_ms)
        else:
            print(f"iris × MLServer: skipped, no venv under {anchors} (run {harness}/setup.sh)")
        if (anchors / "venv-kserve/bin/python").exists():
            targets.append(ceiling_target(tmp, anchors, harness))
        else:
            print(f"iris ceiling: skipped, no venv-kserve under {anchors} (run {harness}/setup.sh)")
    folders = [[m, str(tmp / m), FEATURES if m == "mlp" else 4] for m in models]
    timer = spawn(
        [
            "taskset",
            "-c",
            SERVER_CPU,
            sys.executable,
            "-c",
            TIME_PREDICT,
            json.dumps(folders),
            json.dumps([1, batch]),
        ],
        args.nice,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = timer.communicate(timeout=300)
    predict_ms = json.loads(out) if timer.returncode == 0 else {}
    if not predict_ms:
        print(f"timing predict in process failed: {err[-300:]}")
    rows: list[tuple[Target, int, dict]] = []
    procs: dict[str, subprocess.Popen[bytes]] = {}
    # Every server up at once, and the cells taken concurrency by concurrency across them, so that
    # a model batched and unbatched are measured a few seconds apart under the same outside load.
    runs: list[dict[str, float]] = []  # per run: target name -> req/s at the top concurrency
    try:
        for target in targets:
            try:
                procs[target.name] = start(target, tmp / "logs", args.nice)
            except RuntimeError as exc:
                print(f"{target.name}: did not start: {exc}")
        live = [t for t in targets if t.name in procs]
        top = max(concs)
        for run in range(args.runs):
            # the first run takes every cell; the others repeat the headline's (the MLP at top c)
            cells = [
                (c, t)
                for c in (concs if run == 0 else [top])
                for t in live
                if run == 0 or t.model == "mlp"
            ]
            runs.append({})
            for c, target in cells:
                pid = procs[target.name].pid
                rec = run_cell(harness, target, pid, c, timing, tmp / "load.jsonl", args.nice)
                if run == 0:
                    rows.append((target, c, rec))
                if c == top:
                    runs[-1][target.name] = rec.get("rps", 0)
                print(
                    f"  run {run + 1} {target.name:24s} c={c:<3d} req/s={rec.get('rps', 0):8,.0f} "
                    f"p50={rec.get('p50_ms', 0):6.2f} p99={rec.get('p99_ms', 0):7.2f} ms",
                    flush=True,
                )
    finally:
        for proc in procs.values():
            stop(proc)
    report(rows, concs, predict_ms, batch, latency_ms)
    spread(runs, max(concs), load_before)
    if args.keep:
        print(f"\nraw results (harness JSON lines) and server logs: {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
