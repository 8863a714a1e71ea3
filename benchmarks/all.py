"""Every headline figure of the performance issues, from one command (`make bench`).

    python -m benchmarks all [--runs 3] [--only runtime,eventing] [--full]

Runs each runner below in its own process, one after the other (they pin cores and must not
overlap), shows its whole output, and keeps the lines it prints as `HEADLINE <figure>: …`.
At the end it prints one table: each headline figure with the value of every run, so the spread
across runs shows beside the figure, under the date and the machine it was measured on. Runners
get `--quick` unless `--full` is given. A runner that fails is reported with its exit code; the
others still run. The table is also written to benchmarks/out/headlines-<date>.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# (runner, quick arguments, full arguments), in the order the issues list the figures.
RUNNERS: list[tuple[str, list[str], list[str]]] = [
    ("runtime", ["--quick"], []),
    ("batching", ["--quick", "--models", "mlp", "--conc", "64"], ["--models", "mlp"]),
    ("cold_start", ["--quick"], []),
    ("eventing", ["--quick"], []),
    ("scale", ["--quick"], []),
    ("gateway", ["--duration", "5"], []),
    ("grpc_runtime", ["--quick"], []),
    ("grpc_gateway", ["--quick"], []),
]

HEADLINE = re.compile(r"^HEADLINE\s+(?P<figure>[^:]+):\s*(?P<value>.*)$")


def machine() -> str:
    """The CPU model and count, the kernel and Python: what a reader needs to compare figures."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def run_one(runner: str, args: list[str]) -> tuple[int, list[tuple[str, str]], float]:
    """Run one runner, echo its output as it comes, return its exit code and HEADLINE lines."""
    started = time.monotonic()
    command = [sys.executable, "-m", "benchmarks", runner, *args]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    headlines: list[tuple[str, str]] = []
    with subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            match = HEADLINE.match(line.strip())
            if match:
                headlines.append((match["figure"].strip(), match["value"].strip()))
    return process.returncode, headlines, time.monotonic() - started


def table(results: dict[str, list[str]], failures: list[str], runs: int) -> str:
    lines = [
        f"knserve headline figures, {datetime.date.today().isoformat()}, {machine()}",
        "",
        "| figure | " + " | ".join(f"run {i + 1}" for i in range(runs)) + " |",
        "|---" * (runs + 1) + "|",
    ]
    for figure, values in results.items():
        cells = values + ["-"] * (runs - len(values))
        lines.append(f"| {figure} | " + " | ".join(cells) + " |")
    lines.extend(f"- {failure}" for failure in failures)
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks all")
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole set this often")
    parser.add_argument("--only", default="", help="comma-separated runner names")
    parser.add_argument("--full", action="store_true", help="the runners' own, longer defaults")
    args = parser.parse_args(argv)
    only = {name for name in args.only.split(",") if name}
    known = {name for name, _, _ in RUNNERS}
    if only - known:
        parser.error(f"unknown runner(s) {sorted(only - known)}; choose from {sorted(known)}")
    results: dict[str, list[str]] = {}
    failures: list[str] = []
    for run in range(args.runs):
        for runner, quick, full in RUNNERS:
            if only and runner not in only:
                continue
            if not (REPO / "benchmarks" / f"{runner}.py").is_file():
                failures.append(f"{runner}: no such runner in this checkout")
                continue
            code, headlines, seconds = run_one(runner, full if args.full else quick)
            if code != 0:
                failures.append(f"run {run + 1}, {runner}: exit {code} after {seconds:.0f} s")
            for figure, value in headlines:
                values = results.setdefault(f"{runner}: {figure}", [])
                values.extend(["-"] * (run - len(values)))
                values.append(value)
    summary = table(results, sorted(set(failures)), args.runs)
    print("\n" + summary)
    out = REPO / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / f"headlines-{datetime.date.today().isoformat()}.md").write_text(summary + "\n")
