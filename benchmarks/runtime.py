"""knserve's model server against the bare-uvicorn + predict ceiling, KServe and MLServer, in one
run with the cells interleaved.

    python -m benchmarks runtime [--quick] [--conc 1,8,64] [--rounds 3] [--duration 3]

Uses the shared anchor harness (`shared/bench/bench.py`, found beside the repository or at
$KNSERVE_BENCH_HARNESS): the same iris LogisticRegression, its wrk script on core 1 ($LOAD_CPU),
each server pinned to core 0 ($SERVER_CPU) with one process. All servers start first and stay
up; then every round runs, for each concurrency, one cell (1 s warm-up, then measured) of every
target back to back, so that a target and its ceiling are measured seconds apart under the same
outside load, and each ratio is taken within a round. The tables give the median over rounds and
each ratio's median and range.

The ceiling is `_bare_ceiling.py` on uvicorn (uvloop + httptools): the harness's bare ASGI V1
route, plus a bare V2 route doing the least the protocol asks, run by the harness's KServe venv
(else by this Python). Peers come from the harness's venvs under $ANCHORS_DIR (its setup.sh); a
peer that is not installed is skipped and said so. Ends with `HEADLINE` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks._batching_servers import (
    TRAIN_IRIS,
    Target,
    mlserver_targets,
    start,
    stop,
)
from benchmarks._common import free_port

REPO = Path(__file__).resolve().parent.parent
GOAL = 0.95  # of the ceiling, issue 20


def harness_dir() -> Path | None:
    # beside the repository (a clone next to shared/), or beside the worktrees folder (wt/NAME)
    for candidate in (
        os.environ.get("KNSERVE_BENCH_HARNESS"),
        REPO.parent / "shared" / "bench",
        REPO.parent.parent / "shared" / "bench",
    ):
        if candidate and (Path(candidate) / "bench.py").is_file():
            return Path(candidate)
    return None


def anchors_dir() -> Path:
    return Path(os.environ.get("ANCHORS_DIR", Path.home() / ".cache" / "serving-anchors"))


def installed(anchors: Path, venv: str, package: str) -> bool:
    return any((anchors / venv / "lib").glob(f"python3*/site-packages/{package}/__init__.py"))


def load_harness(harness: Path) -> ModuleType:
    sys.path.insert(0, str(harness))
    import bench  # type: ignore[import-not-found]  # the harness's own module (stdlib only)

    return bench  # type: ignore[no-any-return]


def targets(
    tmp: Path, anchors: Path, harness: Path, bench: ModuleType
) -> tuple[dict[str, Target], list[tuple[str, str, str, str]]]:
    """The servers to start, and the endpoints to load: (label, server, body kind, url)."""
    kserve_py = anchors / "venv-kserve" / "bin" / "python"
    ceiling_py = str(kserve_py) if installed(anchors, "venv-kserve", "uvicorn") else sys.executable
    model_dir = anchors / "models" / "sklearn-iris"
    if not (model_dir / "model.joblib").exists():
        model_dir = tmp / "iris"
        model_dir.mkdir()
        subprocess.run([ceiling_py, "-c", TRAIN_IRIS, str(model_dir / "model.joblib")], check=True)
    v1, v2 = Path(bench.BODIES["v1"]), Path(bench.BODIES["v2"])
    servers: dict[str, Target] = {}
    endpoints: list[tuple[str, str, str, str]] = []

    def add(key: str, argv: list[str], env: dict[str, str], cwd: Path | None, eps: str) -> str:
        port = free_port()
        argv = [a.replace("{port}", str(port)) for a in argv]
        base = f"http://127.0.0.1:{port}"
        first = "v1" if "v1" in eps else "v2"
        url = base + bench.PATHS[first]
        body = v1 if first == "v1" else v2
        servers[key] = Target("iris", key, "-", argv, url, body, env, cwd)
        for kind in eps.split(","):
            endpoints.append((f"{key} {kind.upper()}", key, kind, base + bench.PATHS[kind]))
        return base

    add(
        "knserve",
        [
            sys.executable,
            "-m",
            "knserve.runtime",
            "--model-name",
            "iris",
            "--model-dir",
            str(model_dir),
            "--http-port",
            "{port}",
        ],
        {},
        None,
        "v1,v2",
    )
    add(
        "bare-uvicorn",
        [
            ceiling_py,
            "-m",
            "uvicorn",
            "_bare_ceiling:app",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        {"MODEL_PATH": str(model_dir / "model.joblib")},
        Path(__file__).parent,
        "v1,v2",
    )
    if installed(anchors, "venv-kserve", "kserve"):
        add(
            "kserve",
            [
                str(kserve_py),
                str(harness / "kserve_iris.py"),
                "--model_name",
                "iris",
                "--model_dir",
                str(model_dir),
                "--http_port",
                "{port}",
                "--workers",
                "1",
                "--enable_grpc",
                "false",
            ],
            {},
            harness,
            "v1,v2",
        )
    else:
        print(f"skipped peer KServe: kserve is not installed in {anchors}/venv-kserve (setup.sh)")
    if installed(anchors, "venv-mlserver", "mlserver"):
        (mls,) = mlserver_targets(tmp, anchors, v2, 1, 0)[:1]
        servers["mlserver"] = mls
        endpoints.append(("mlserver V2", "mlserver", "v2", mls.url))
    else:
        print(f"skipped peer MLServer: mlserver is not installed in {anchors}/venv-mlserver")
    return servers, endpoints


def load_cell(
    bench: ModuleType, url: str, kind: str, conc: int, timing: tuple[int, int], pid: int
) -> dict[str, Any]:
    """One cell: a warm-up, then a measured wrk run; the harness's record plus CPU per request."""
    duration, warmup = timing
    bench.run_wrk(url, kind, conc, warmup, "warmup")
    cpu0 = bench.tree_cpu_s(pid)
    rec: dict[str, Any] = bench.run_wrk(url, kind, conc, duration, "cell")
    cpu1 = bench.tree_cpu_s(pid)
    if rec.get("requests"):
        rec["server_cpu_us_per_req"] = (cpu1 - cpu0) / rec["requests"] * 1e6
    rec["errors"] = sum(
        rec.get(k, 0) for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout")
    )
    return rec


def summarise(results: Path) -> dict[tuple[str, int], dict[str, float]]:
    rows: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for line in results.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "load":
            target = rec["target"].replace(":extra", "")
            rows[(target, rec["conc"])].append(rec)
        elif rec.get("type") == "error":
            print(f"  error: {rec}")
    out = {}
    for key, recs in rows.items():
        out[key] = {
            "rps": statistics.mean(r["rps"] for r in recs),
            "p50": statistics.mean(r["p50_ms"] for r in recs),
            "p99": statistics.mean(r["p99_ms"] for r in recs),
            "cpu": statistics.mean(r.get("server_cpu_us_per_req") or 0 for r in recs),
            "errors": sum(r.get("errors", 0) for r in recs),
        }
    return out


Cells = dict[tuple[str, int], list[dict[str, Any]]]  # (endpoint label, conc) -> one per round

# (ours, theirs, what, goal): the ratios printed; those with a goal are HEADLINE lines too
PAIRS = [
    ("knserve V2", "bare-uvicorn V2", "V2 infer vs bare uvicorn + predict, V2", GOAL),
    ("knserve V1", "bare-uvicorn V1", "V1 predict vs bare uvicorn + predict, V1", GOAL),
    (
        "knserve V2",
        "bare-uvicorn V1",
        "V2 infer vs the V1 ceiling (the issue's first figure)",
        None,
    ),
    ("knserve V2", "kserve V2", "V2 infer vs KServe 0.21", 2.5),
    ("knserve V1", "kserve V1", "V1 predict vs KServe 0.21", None),
    ("knserve V2", "mlserver V2", "V2 infer vs MLServer 1.7.1", None),
]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def ratios(cells: Cells, ours: str, theirs: str, conc: int) -> list[float]:
    """ours / theirs req/s within each round (the two cells seconds apart)."""
    a, b = cells.get((ours, conc), []), cells.get((theirs, conc), [])
    return [x["rps"] / y["rps"] for x, y in zip(a, b, strict=False) if y.get("rps")]


def report(cells: Cells, labels: list[str], concs: list[int], load: str) -> None:
    print("\n| target | conc | req/s (median) | p50 ms | p99 ms | server CPU µs/req | errors |")
    print("|---|---|---|---|---|---|---|")
    for label in labels:
        for c in concs:
            recs = cells.get((label, c))
            if not recs:
                continue
            cpu = median([r.get("server_cpu_us_per_req", 0) for r in recs])
            print(
                f"| {label} | {c} | {median([r['rps'] for r in recs]):,.0f} "
                f"| {median([r['p50_ms'] for r in recs]):.2f} "
                f"| {median([r['p99_ms'] for r in recs]):.2f} | {cpu:.0f} "
                f"| {sum(r['errors'] for r in recs)} |"
            )
    print("\n| ratio of req/s, median (range) over rounds | " + " | ".join(f"c={c}" for c in concs))
    print("|---|" + "---|" * len(concs))
    headlines = []
    for ours, theirs, what, goal in PAIRS:
        found = [ratios(cells, ours, theirs, c) for c in concs]
        if not any(found):
            continue
        row = [f"{median(r):.2f}× ({min(r):.2f}–{max(r):.2f})" if r else "–" for r in found]
        print(f"| {what} | " + " | ".join(row) + " |")
        if goal is None:
            continue
        for c, r in zip(concs, found, strict=True):
            if r:
                mine = median([x["rps"] for x in cells[(ours, c)]])
                ref = median([x["rps"] for x in cells[(theirs, c)]])
                headlines.append(
                    f"HEADLINE {what} c={c} req/s: {mine:,.0f} vs {ref:,.0f} = {median(r):.2f} "
                    f"(range {min(r):.2f}–{max(r):.2f} over {len(r)} rounds; goal >= {goal:g}; "
                    f"load {load})"
                )
    print()
    print("\n".join(headlines))


def loadavg() -> str:
    """The 1, 5 and 15-minute load averages, said beside every figure taken on a shared machine."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks runtime")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s cells")
    parser.add_argument("--conc", default="1,8,64")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3, help="measured seconds per cell")
    parser.add_argument("--only-ours", action="store_true", help="skip KServe and MLServer")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, raw)")
    args = parser.parse_args(argv)
    harness = harness_dir()
    if harness is None:
        print(
            "skipped: the shared bench harness (shared/bench/bench.py) is not beside the repository;"
            " set KNSERVE_BENCH_HARNESS"
        )
        return
    bench = load_harness(harness)
    anchors = anchors_dir()
    tmp = Path(tempfile.mkdtemp(prefix="knserve-runtime-"))
    (tmp / "logs").mkdir()
    rounds, timing = (2, (2, 1)) if args.quick else (args.rounds, (args.duration, 1))
    concs = [int(c) for c in args.conc.split(",")]
    servers, endpoints = targets(tmp, anchors, harness, bench)
    if args.only_ours:
        keep = {"knserve", "bare-uvicorn"}
        servers = {k: v for k, v in servers.items() if k in keep}
        endpoints = [e for e in endpoints if e[1] in keep]
    procs: dict[str, subprocess.Popen[bytes]] = {}
    cells: Cells = defaultdict(list)
    load_before = loadavg()
    print(
        f"runtime: {len(endpoints)} endpoints × c={args.conc} × {rounds} rounds of "
        f"{timing[1]} s warm-up + {timing[0]} s; load average {load_before}; work folder {tmp}",
        flush=True,
    )
    try:
        for key, target in servers.items():
            try:
                procs[key] = start(target, tmp / "logs", 0)
            except RuntimeError as exc:
                print(f"{key}: did not start: {exc}")
        live = [e for e in endpoints if e[1] in procs]
        for label, _, kind, url in live:
            _ok, status, snippet = bench.validate(url, kind)
            print(f"  {label}: {status} {snippet[:100]}")
        for rnd in range(rounds):
            for c in concs:
                for label, key, kind, url in live:
                    rec = load_cell(bench, url, kind, c, timing, procs[key].pid)
                    cells[(label, c)].append(rec)
                    print(
                        f"  r{rnd + 1} {label:16s} c={c:<3d} req/s={rec['rps']:8,.0f} "
                        f"p50={rec['p50_ms']:.2f} ms cpu/req="
                        f"{rec.get('server_cpu_us_per_req', 0):.0f} µs",
                        flush=True,
                    )
    finally:
        for proc in procs.values():
            stop(proc)
    (tmp / "cells.json").write_text(json.dumps({f"{k[0]}|{k[1]}": v for k, v in cells.items()}))
    load = f"{load_before} before, {loadavg()} after (1/5/15-min load average, 2 cores)"
    report(cells, [e[0] for e in endpoints], concs, load)
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"\nlogs and raw cells: {tmp}")


if __name__ == "__main__":
    main(sys.argv[1:])
