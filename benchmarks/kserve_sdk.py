"""One KServe custom model file, hosted by knserve's runtime and under KServe's own server.

    python -m benchmarks kserve_sdk [--quick] [--conc 8] [--repeats 1]

The file is KServe's documented custom model in its form (tests/support/kserve_sdk/
custom_model.py: a `kserve.Model` with `preprocess`/`predict`, started by
`kserve.ModelServer().start([model])`) serving an iris LogisticRegression(max_iter=1000) trained
here. In the same run, through the shared anchor harness (shared/bench/bench.py: wrk on core 1,
each server pinned to core 0, one process):

* knserve-hosted: `python -m knserve.runtime --kserve-model FILE …` (knserve's defaults);
* kserve: the file under KServe's ModelServer with KServe's defaults (latency log and access
  log per request), gRPC off, bound to loopback (tests/support/kserve_sdk/kserve_loopback.py);
* kserve-quiet: the same with `--enable_latency_logging=false --configure_logging=false`.

Prints req/s, p50, p99 and server CPU per request per target, and the req/s ratios
knserve-hosted / KServe (V1 and V2).
Needs kserve in this environment (the test extra has it) and wrk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._common import free_port
from benchmarks.runtime import REPO, harness_dir, summarise

SDK = REPO / "tests" / "support" / "kserve_sdk"
MODEL_FILE = SDK / "custom_model.py"
LOOPBACK = SDK / "kserve_loopback.py"
QUIET = "--enable_latency_logging=false --configure_logging=false"


def train(folder: Path) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), folder / "model.joblib")


def targets(model_dir: Path) -> list[str]:
    """The harness's --extra specs: each server's V1 and V2 endpoints (cmd= last)."""
    flags = f"--model_name=iris --model_dir={model_dir} --enable_grpc=false"
    commands = {
        "knserve-hosted": f"{sys.executable} -m knserve.runtime --kserve-model {MODEL_FILE} {flags}",
        "kserve": f"{sys.executable} {LOOPBACK} {MODEL_FILE} {flags}",
        "kserve-quiet": f"PYTHONWARNINGS=ignore {sys.executable} {LOOPBACK} {MODEL_FILE} {flags} {QUIET}",
    }
    specs = []
    for name, command in commands.items():
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        for proto, path in (("v1", "/v1/models/iris:predict"), ("v2", "/v2/models/iris/infer")):
            cmd = f"{command} --http_port={port}"
            specs.append(f"name={name}-{proto},url={base}{path},body={proto},cmd={cmd}")
    return specs


def report(summary: dict[tuple[str, int], dict[str, float]], concs: list[int]) -> None:
    # server CPU per request moves less than req/s when other work shares the machine
    print("\n| target | conc | req/s | p50 ms | p99 ms | server CPU µs/req | errors |")
    print("|---|---|---|---|---|---|---|")
    for (target, c), s in sorted(summary.items()):
        print(
            f"| {target} | {c} | {s['rps']:,.0f} | {s['p50']:.2f} | {s['p99']:.2f} | "
            f"{s['cpu']:.0f} | {s['errors']:.0f} |"
        )
    print("\n| ratio (req/s), knserve-hosted ÷ | " + " | ".join(f"c={c}" for c in concs) + " |")
    print("|---|" + "---|" * len(concs))
    for proto in ("v1", "v2"):
        for peer in ("kserve", "kserve-quiet"):
            cells = []
            for c in concs:
                ours = summary.get((f"knserve-hosted-{proto}:{proto}", c))
                theirs = summary.get((f"{peer}-{proto}:{proto}", c))
                ok = ours and theirs and theirs["rps"]
                cells.append(f"{ours['rps'] / theirs['rps']:.2f}×" if ok else "–")  # type: ignore[index]
            print(f"| {proto.upper()} vs {peer} | " + " | ".join(cells) + " |")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks kserve_sdk")
    parser.add_argument("--quick", action="store_true", help="1 s warm-up, 4 s per cell")
    parser.add_argument("--conc", default="8")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--out", type=Path, help="JSON lines file (default: a temporary file)")
    args = parser.parse_args(argv)
    harness = harness_dir()
    if harness is None:
        print(
            "skipped: the shared bench harness (shared/bench/bench.py) is not beside the repository"
        )
        return
    if shutil.which("wrk") is None:
        print("skipped: wrk is not installed (the harness's setup.sh installs it)")
        return
    try:
        import kserve  # noqa: F401
    except ImportError:
        print("skipped: kserve is not installed here (pip install -e '.[test]' brings it)")
        return
    work = Path(tempfile.mkdtemp(prefix="knserve-bench-kserve-sdk-"))
    train(work)
    out = args.out or work / "kserve_sdk.jsonl"
    duration, warmup = (4, 1) if args.quick else (args.duration, 3)
    cmd = [sys.executable, str(harness / "bench.py"), "--out", str(out), "load"]
    cmd += ["--conc", args.conc, "--duration", str(duration), "--warmup", str(warmup)]
    cmd += ["--repeats", str(args.repeats), "--only", "none"]
    for spec in targets(work):
        cmd += ["--extra", spec]
    print("running:", " ".join(cmd[:8]), "…", flush=True)
    subprocess.run(cmd, check=False, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    report(summarise(out), [int(c) for c in args.conc.split(",")])
    print(f"\nraw results: {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
