"""The batching runner's servers: knserve with batching off and on, MLServer without and with
adaptive batching, and the harness's bare-uvicorn ceiling, each started pinned to the server core
and stopped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._common import free_port

SERVER_CPU = os.environ.get("SERVER_CPU", "0")

TRAIN_IRIS = """import sys, joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
x, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), sys.argv[1])
"""


@dataclass
class Target:
    model: str
    server: str
    batching: str
    argv: list[str]
    url: str
    body: Path
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    metrics_url: str | None = None

    @property
    def name(self) -> str:
        return f"{self.model}-{self.server}-{self.batching.split()[0]}"


def post(url: str, body: bytes) -> int:
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=2.0) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    out, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM a process we started, then SIGKILL what is left of its tree after 10 s (by PID)."""
    if proc.poll() is not None:
        return  # exited and reaped: its PID may already be someone else's
    children = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    for pid in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def spawn(argv: list[str], nice: int, **kwargs: Any) -> subprocess.Popen[Any]:
    """Popen in a session of its own. With autogroups (Linux's default) niceness only counts
    within a session, so `nice` is applied to the process and to its session's autogroup."""
    proc = subprocess.Popen(["nice", "-n", str(nice), *argv], start_new_session=True, **kwargs)
    if nice:
        with contextlib.suppress(OSError):
            Path(f"/proc/{proc.pid}/autogroup").write_text(str(nice))
    return proc


def start(target: Target, logs: Path, nice: int) -> subprocess.Popen[bytes]:
    """Launch pinned to the server core; return once a predict answers 200 (120 s at most)."""
    with (logs / f"{target.name}.log").open("ab") as log:
        proc = spawn(
            ["taskset", "-c", SERVER_CPU, *target.argv],
            nice,
            cwd=target.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONWARNINGS": "ignore", **target.env},
        )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}; see {logs}/{target.name}.log")
            try:
                status = post(target.url, target.body.read_bytes())
            except OSError:
                status = 0
            if status == 200:
                return proc
            if status not in (0, 503):
                raise RuntimeError(f"a predict answered {status}")
            time.sleep(0.05)
        raise RuntimeError("not ready after 120 s")
    except BaseException:
        stop(proc)
        raise


def knserve_targets(
    tmp: Path, model: str, body: Path, batch: int, latency_ms: float
) -> list[Target]:
    targets = []
    for batching, flags in (
        ("off", []),
        (
            f"on {batch}/{latency_ms:g}ms",
            ["--max-batch-size", str(batch), "--max-latency-ms", str(latency_ms)],
        ),
    ):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        argv = [
            sys.executable,
            "-m",
            "knserve.runtime",
            "--model-name",
            model,
            "--model-dir",
            str(tmp / model),
            "--http-port",
            str(port),
            *flags,
        ]
        metrics = f"{base}/metrics" if flags else None
        url = f"{base}/v2/models/{model}/infer"
        targets.append(Target(model, "knserve", batching, argv, url, body, metrics_url=metrics))
    return targets


def mlserver_targets(
    tmp: Path, anchors: Path, body: Path, batch: int, latency_ms: float
) -> list[Target]:
    targets = []
    for batching, settings in (
        ("off", {}),
        (
            f"adaptive {batch}/{latency_ms:g}ms",
            {"max_batch_size": batch, "max_batch_time": latency_ms / 1000},
        ),
    ):
        folder = tmp / f"mlserver-{batching.split()[0]}"
        folder.mkdir()
        py = anchors / "venv-mlserver/bin/python"
        subprocess.run([str(py), "-c", TRAIN_IRIS, str(folder / "model.joblib")], check=True)
        model_settings = {
            "name": "iris",
            "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "v1"},
            **settings,
        }
        (folder / "model-settings.json").write_text(json.dumps(model_settings))
        port = free_port()
        env = {
            "MLSERVER_HOST": "127.0.0.1",
            "MLSERVER_HTTP_PORT": str(port),
            "MLSERVER_GRPC_PORT": str(free_port()),
            "MLSERVER_METRICS_PORT": str(free_port()),
            "MLSERVER_PARALLEL_WORKERS": "0",
            "MLSERVER_DEBUG": "false",
            "MLSERVER_ENVIRONMENTS_DIR": str(folder / "envs"),
            "MLSERVER_METRICS_DIR": str(folder / "metrics"),
            "PYTHONPATH": str(anchors / "extras-httptools"),
        }
        argv = [str(anchors / "venv-mlserver/bin/mlserver"), "start", str(folder)]
        url = f"http://127.0.0.1:{port}/v2/models/iris/infer"
        targets.append(Target("iris", "mlserver", batching, argv, url, body, env, folder))
    return targets


def ceiling_target(tmp: Path, anchors: Path, harness: Path) -> Target:
    py = anchors / "venv-kserve/bin/python"
    subprocess.run([str(py), "-c", TRAIN_IRIS, str(tmp / "ceiling.joblib")], check=True)
    port = free_port()
    argv = [
        str(py),
        "-m",
        "uvicorn",
        "ceiling_app:raw",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    url = f"http://127.0.0.1:{port}/v1/models/iris:predict"
    env = {"MODEL_PATH": str(tmp / "ceiling.joblib")}
    return Target(
        "iris",
        "uvicorn-raw",
        "ceiling (V1)",
        argv,
        url,
        harness / "bodies/v1_iris.json",
        env,
        harness,
    )
