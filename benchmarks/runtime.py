"""The model server against KServe, MLServer and the bare-uvicorn ceiling, in one run.

    python -m benchmarks runtime [--quick] [--conc 1,8,64] [--repeats 1] [--coldstart]

Uses the shared anchor harness (`shared/bench/bench.py`, found beside the repository or at
$KNSERVE_BENCH_HARNESS): the same iris LogisticRegression, wrk on core 1, each server pinned to
core 0 with one process. Peers come from the harness's venvs under $ANCHORS_DIR (made by its
setup.sh); a peer that is not installed is skipped and said so. Prints req/s, p50 and p99 per
target and concurrency, and our ratios against KServe, MLServer and the ceiling.
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

REPO = Path(__file__).resolve().parent.parent
PORT = 9100


def harness_dir() -> Path | None:
    for candidate in (os.environ.get("KNSERVE_BENCH_HARNESS"), REPO.parent / "shared" / "bench"):
        if candidate and (Path(candidate) / "bench.py").is_file():
            return Path(candidate)
    return None


def anchors_dir() -> Path:
    return Path(os.environ.get("ANCHORS_DIR", Path.home() / ".cache" / "serving-anchors"))


def peers_available(anchors: Path) -> dict[str, bool]:
    return {
        "kserve": (anchors / "venv-kserve" / "bin" / "python").exists(),
        "mlserver": (anchors / "venv-mlserver" / "bin" / "python").exists(),
        "uvicorn-raw": (anchors / "venv-kserve" / "bin" / "python").exists(),
    }


def ours_extras(model_dir: Path) -> list[str]:
    cmd = (
        f"{sys.executable} -m knserve.runtime --model-name iris --model-dir {model_dir} "
        f"--http-port {PORT}"
    )
    base = f"http://127.0.0.1:{PORT}"
    return [
        f"name=knserve-v1,url={base}/v1/models/iris:predict,body=v1,cmd={cmd}",
        f"name=knserve-v2,url={base}/v2/models/iris/infer,body=v2,cmd={cmd}",
    ]


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


def report(summary: dict[tuple[str, int], dict[str, float]], concs: list[int]) -> None:
    targets = sorted({t for t, _ in summary}, key=lambda t: (not t.startswith("knserve"), t))
    print("\n| target | conc | req/s | p50 ms | p99 ms | server CPU µs/req | errors |")
    print("|---|---|---|---|---|---|---|")
    for target in targets:
        for c in concs:
            s = summary.get((target, c))
            if s:
                print(
                    f"| {target} | {c} | {s['rps']:,.0f} | {s['p50']:.2f} | {s['p99']:.2f} | "
                    f"{s['cpu']:.0f} | {s['errors']:.0f} |"
                )
    pairs = [
        ("knserve-v2:v2", "kserve:v2", "V2 vs KServe (goal ≥ 2.5×)"),
        ("knserve-v2:v2", "mlserver:v2", "V2 vs MLServer"),
        ("knserve-v2:v2", "uvicorn-raw:v1", "V2 vs bare uvicorn + predict (goal ≥ 0.80)"),
        ("knserve-v1:v1", "kserve:v1", "V1 vs KServe"),
        ("knserve-v1:v1", "uvicorn-raw:v1", "V1 vs bare uvicorn + predict"),
    ]
    print("\n| ratio (req/s) | " + " | ".join(f"c={c}" for c in concs) + " |")
    print("|---|" + "---|" * len(concs))
    for ours, theirs, label in pairs:
        cells = []
        for c in concs:
            a, b = summary.get((ours, c)), summary.get((theirs, c))
            cells.append(f"{a['rps'] / b['rps']:.2f}×" if a and b and b["rps"] else "–")
        print(f"| {label} | " + " | ".join(cells) + " |")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks runtime")
    parser.add_argument("--quick", action="store_true", help="1 s warm-up, 4 s per cell, one round")
    parser.add_argument("--conc", default="1,8,64")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--out", type=Path, help="JSON lines file (default: a temporary file)")
    parser.add_argument("--only-ours", action="store_true", help="skip the peers")
    parser.add_argument("--coldstart", action="store_true", help="also time cold starts (5 runs)")
    args = parser.parse_args(argv)
    harness = harness_dir()
    if harness is None:
        print(
            "skipped: the shared bench harness (shared/bench/bench.py) is not beside the repository;"
            " set KNSERVE_BENCH_HARNESS"
        )
        return
    anchors = anchors_dir()
    model_dir = anchors / "models" / "sklearn-iris"
    if not (model_dir / "model.joblib").exists():
        print(
            f"skipped: no iris model in {model_dir}; run {harness}/setup.sh first (it also makes "
            "the peers' venvs and installs wrk)"
        )
        return
    available = peers_available(anchors)
    peers = (
        []
        if args.only_ours
        else [
            t
            for t, server in (
                ("uvicorn-raw:v1", "uvicorn-raw"),
                ("kserve:v1", "kserve"),
                ("kserve:v2", "kserve"),
                ("mlserver:v2", "mlserver"),
            )
            if available[server]
        ]
    )
    for server, ok in available.items():
        if not ok and not args.only_ours:
            print(
                f"skipped peer {server}: its venv is not under {anchors} (run {harness}/setup.sh)"
            )
    out = args.out or Path(tempfile.mkdtemp(prefix="knserve-bench-")) / "runtime.jsonl"
    duration, warmup = (4, 1) if args.quick else (args.duration, 3)
    cmd = [
        sys.executable,
        str(harness / "bench.py"),
        "--out",
        str(out),
        "load",
        "--conc",
        args.conc,
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--repeats",
        str(args.repeats),
    ]
    cmd += ["--only", ",".join(peers) if peers else "none"]
    for extra in ours_extras(model_dir):
        cmd += ["--extra", extra]
    print("running:", " ".join(cmd[:8]), "…", flush=True)
    subprocess.run(cmd, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if args.coldstart:
        cold = [
            sys.executable,
            str(harness / "bench.py"),
            "--out",
            str(out),
            "coldstart",
            "--runs",
            "5",
            "--only",
            "kserve,mlserver",
        ]
        for extra in ours_extras(model_dir)[1:]:
            cold += ["--extra", extra]
        subprocess.run(cold, check=False)
        subprocess.run([sys.executable, str(harness / "report.py"), str(out)], check=False)
    report(summarise(out), [int(c) for c in args.conc.split(",")])
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
