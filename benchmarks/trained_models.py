"""TrainedModels in one server against one InferenceService per model: memory and load time.

`python -m benchmarks trained_models [--models N]` trains N small sklearn models (iris
LogisticRegression, each with its own classes), then, in one run:

- **multi-model**: one knserve.runtime process started with an empty model config (as a
  multi-model predictor's replica starts), into which each model is listed and loaded through
  the repository extension (`POST /v2/repository/models/{name}/load`), as the plane's
  TrainedModel controller loads it: the time of each load and the server's RSS and PSS after
  it, so the memory one more model costs;
- **one server per model**: N knserve.runtime processes, each started with one model (what one
  InferenceService per model runs, one replica each): the time from spawn to ready, and each
  process's RSS and PSS.

PSS (proportional set size) splits shared pages among the processes sharing them; it is the
fairer figure when many replicas run. On the plane, replicas fork from a warm zygote, which
shares more pages and starts faster than these cold starts; the numbers here are the plain
process cost.
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

import httpx

from benchmarks._common import free_port

MIB = 1 << 20


def train(folder: Path, offset: int) -> None:
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y + offset), folder / "model.joblib")


def memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of a process in MiB, from /proc."""
    rss = pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            value = int(rest.split()[0]) * 1024
            rss, pss = (value, pss) if key == "Rss" else (rss, value)
    return rss / MIB, pss / MIB


def start_server(args: list[str], log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """A knserve.runtime process on a free port; its base URL and seconds from spawn to ready."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "NO_PROXY": "127.0.0.1"}
    started = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "knserve.runtime", "--http_port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(trust_env=False, timeout=2) as client:
        deadline = started + 120
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited ({proc.returncode}); see {log}")
            try:
                if client.get(f"{url}/v2/health/ready").status_code == 200:
                    return proc, url, time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.005)  # another process: polling its port is the only signal
    proc.kill()
    raise RuntimeError(f"the server was not ready within 120 s; see {log}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def multi_model(work: Path, names: list[str]) -> dict[str, list[float]]:
    config = work / "models.json"
    config.write_text("[]")
    proc, url, ready = start_server(["--model-config", str(config)], work / "mms.log")
    out: dict[str, list[float]] = {"start": [ready], "load_ms": [], "rss": [], "pss": []}
    try:
        rss, pss = memory(proc.pid)
        out["rss"].append(rss)
        out["pss"].append(pss)
        entries = []
        with httpx.Client(trust_env=False, timeout=120) as client:
            for name in names:
                entries.append(
                    {
                        "modelName": name,
                        "modelSpec": {
                            "storageUri": str(work / name),
                            "framework": "sklearn",
                            "memory": "64Mi",
                        },
                    }
                )
                config.write_text(json.dumps(entries))
                began = time.perf_counter()
                response = client.post(f"{url}/v2/repository/models/{name}/load", json={})
                out["load_ms"].append((time.perf_counter() - began) * 1000)
                response.raise_for_status()
                rss, pss = memory(proc.pid)
                out["rss"].append(rss)
                out["pss"].append(pss)
            for name in names:  # each answers with its own model
                answer = client.post(
                    f"{url}/v1/models/{name}:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
                )
                assert answer.json() == {"predictions": [10 * names.index(name)]}, answer.text
    finally:
        stop(proc)
    return out


def one_per_model(work: Path, names: list[str]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"start": [], "rss": [], "pss": []}
    procs = []
    try:
        for name in names:
            proc, _, ready = start_server(
                ["--model_name", name, "--model_dir", str(work / name)], work / f"{name}.log"
            )
            procs.append(proc)
            out["start"].append(ready)
        for proc in procs:  # all running together, as N InferenceServices would
            rss, pss = memory(proc.pid)
            out["rss"].append(rss)
            out["pss"].append(pss)
    finally:
        for proc in procs:
            stop(proc)
    return out


def report(n: int, mms: dict[str, list[float]], solo: dict[str, list[float]]) -> None:
    deltas_rss = [b - a for a, b in zip(mms["rss"], mms["rss"][1:], strict=False)]
    deltas_pss = [b - a for a, b in zip(mms["pss"], mms["pss"][1:], strict=False)]
    later = sorted(mms["load_ms"][1:])
    print(f"\n{n} sklearn iris models (LogisticRegression), one run\n")
    print("one multi-model server (TrainedModels loaded through the repository extension)")
    print(f"  empty server: start {mms['start'][0] * 1000:.0f} ms, RSS {mms['rss'][0]:.1f} MiB, "
          f"PSS {mms['pss'][0]:.1f} MiB")  # fmt: skip
    print(f"  first load: {mms['load_ms'][0]:.0f} ms, RSS +{deltas_rss[0]:.1f} MiB "
          "(the framework's import: sklearn, scipy)")  # fmt: skip
    print(f"  each further load: p50 {statistics.median(later):.1f} ms, max {later[-1]:.1f} ms; "
          f"RSS +{statistics.median(deltas_rss[1:]):.2f} MiB, "
          f"PSS +{statistics.median(deltas_pss[1:]):.2f} MiB (median)")  # fmt: skip
    print(f"  holding all {n}: RSS {mms['rss'][-1]:.1f} MiB, PSS {mms['pss'][-1]:.1f} MiB")
    starts = sorted(solo["start"])
    print(f"{n} servers, one per model (one InferenceService each, one replica, cold processes)")
    print(f"  start to ready: p50 {statistics.median(starts) * 1000:.0f} ms, "
          f"max {starts[-1] * 1000:.0f} ms")  # fmt: skip
    print(f"  per server: RSS {statistics.median(solo['rss']):.1f} MiB, "
          f"PSS {statistics.median(solo['pss']):.1f} MiB (median)")  # fmt: skip
    print(f"  all {n}: RSS {sum(solo['rss']):.1f} MiB, PSS {sum(solo['pss']):.1f} MiB")
    ratio = sum(solo["pss"]) / mms["pss"][-1]
    print(f"\n{n} servers take {ratio:.1f}x the memory (PSS) of one server holding the {n} models")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks trained_models")
    parser.add_argument("--models", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="knserve-tm-bench-") as tmp:
        work = Path(tmp)
        names = [f"m{i}" for i in range(args.models)]
        for i, name in enumerate(names):
            train(work / name, 10 * i)
        mms = multi_model(work, names)
        solo = one_per_model(work, names)
    report(args.models, mms, solo)
