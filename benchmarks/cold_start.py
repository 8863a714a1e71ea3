"""Scale from zero through the gateway, with warm per-revision templates and without, in one run.

    python -m benchmarks cold_start [--quick] [--runs 15]

Starts `knserve up` twice on free loopback ports with Knative's windows shrunk to seconds: once
as it runs by default (a warm template per revision: the model loaded, or the function's own
environment's interpreter started, forked for each replica) and once with `--template-budget-mib 0`
(no templates: a replica is forked from the plane's zygote and loads its model, or a function is
exec'd in its environment: the figures before templates). Each plane serves a scikit-learn iris
InferenceService (`minReplicas: 0`) and an `http` function built with its own environment
(`knserve func create` + `knserve func deploy`); each round waits until both are at zero (and
their replicas' processes gone), then times one request to each through the gateway, a fresh
connection each. Beside the gain it prints what the templates cost: the budget and each
template's USS (its own pages, what dropping it frees) from the plane's `/metrics`.
Numbers are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks._autoscaling_plane import Plane, call, stats
from benchmarks.autoscaling import V1_BODY, iris_isvc, train_iris

TARGETS = [
    ("iris-predictor", "iris.default.localhost", "/v1/models/iris:predict", V1_BODY),
    ("hello", "hello.default.localhost", "/", None),
]
_TEMPLATE = re.compile(r'^knserve_template_uss_bytes\{[^}]*revision="([^"]+)"[^}]*\} (\S+)$', re.M)
_BUDGET = re.compile(r"^knserve_template_budget_bytes (\S+)$", re.M)


def templates(plane: Plane) -> tuple[dict[str, float], float | None]:
    """(USS in MiB per revision with a template, the budget in MiB) from the plane's /metrics."""
    url = f"http://127.0.0.1:{plane.api_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    budget = _BUDGET.search(text)
    uss = {rev: float(v) / 2**20 for rev, v in _TEMPLATE.findall(text)}
    return uss, float(budget.group(1)) / 2**20 if budget else None


def wait_templates(plane: Plane, count: int, limit: float = 60) -> None:
    """Until `count` templates are up (they start beside a revision's first replica)."""
    deadline = time.monotonic() + limit
    while len(templates(plane)[0]) < count and time.monotonic() < deadline:
        time.sleep(0.1)


def one_plane(root: Path, env: dict[str, str], budget: str | None, runs: int) -> dict:
    extra = ("--template-budget-mib", budget) if budget is not None else ()
    root.mkdir(parents=True)
    plane = Plane(root, env, extra=extra)
    times: dict[str, list[float]] = {prefix: [] for prefix, *_ in TARGETS}
    try:
        plane.apply(root, iris_isvc(root.parent / "iris"))
        hello = root.parent / "hello"
        if not hello.exists():
            plane.cli("func", "create", "-t", "http", "-p", str(hello), "hello")
        plane.cli("func", "deploy", "-p", str(hello))
        for prefix, *_ in TARGETS:
            plane.wait_spawned(prefix)
        if budget != "0":
            wait_templates(plane, len(TARGETS))
        for run in range(runs):
            for prefix, *_ in TARGETS:
                plane.wait_zero(prefix)
            for prefix, host, path, body in TARGETS:
                status, seconds = call(plane.port, host, path, body)
                if status != 200:
                    print(
                        f"  ! {prefix} run {run + 1}: status {status} after {seconds * 1e3:.0f} ms"
                    )
                    continue
                times[prefix].append(seconds)
        uss, limit = templates(plane)
    finally:
        plane.close()
    return {"times": times, "uss": uss, "budget": limit}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks cold_start")
    parser.add_argument("--quick", action="store_true", help="5 cold starts per target and plane")
    parser.add_argument("--runs", type=int, help="cold starts per target and plane (default 15)")
    args = parser.parse_args(argv)
    runs = args.runs or (5 if args.quick else 15)
    root = Path(tempfile.mkdtemp(prefix="knserve-cold-start-"))
    env = {**os.environ, "KNSERVE_FUNCTIONS_HOME": str(root / "functions-home")}
    print(f"work folder {root}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    train_iris(root / "iris")
    results = {}
    for label, budget in (("templates", None), ("no templates", "0")):
        print(f"\n== {label}: {runs} cold starts per target through the gateway")
        results[label] = one_plane(root / label.replace(" ", "-"), env, budget, runs)
        for prefix, host, _, _ in TARGETS:
            print(f"  {host:26} first request at zero: {stats(results[label]['times'][prefix])}")
    cost = results["templates"]
    print(f"\ntemplate budget {cost['budget'] or 0:.0f} MiB; USS per template:")
    for revision, mib in sorted(cost["uss"].items()):
        print(f"  {revision:30} {mib:6.1f} MiB")
    print(f"load average now {os.getloadavg()[0]:.2f}")
    goals = {"iris-predictor": 20, "hello": 50}
    names = {
        "iris-predictor": "cold start sklearn InferenceService",
        "hello": "cold start function own env",
    }
    for prefix, *_ in TARGETS:
        ours, before = (results[k]["times"][prefix] for k in ("templates", "no templates"))
        if not ours or not before:
            print(f"HEADLINE {names[prefix]} (median ms): no samples")
            continue
        a, b = statistics.median(ours) * 1e3, statistics.median(before) * 1e3
        uss = next((v for r, v in cost["uss"].items() if r.startswith(prefix + "-")), 0.0)
        print(
            f"HEADLINE {names[prefix]} (median ms): {a:.1f} vs {b:.1f} without templates = "
            f"{b / a:.2f}x faster, template USS {uss:.1f} MiB (goal < {goals[prefix]} ms)"
        )
