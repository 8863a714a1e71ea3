"""The autoscaling runner's plane: `knserve up` with Knative's windows shrunk to seconds, its
log, `/metrics` and CLI, and the request, memory and process helpers the runner times with."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks._common import free_port

FAST = [
    "stable-window=6s",
    "scale-to-zero-grace-period=1s",
    "tick-interval=1s",
    "horizontal-pod-autoscaler-downscale-stabilization=10s",  # the HPA class; 300 s on a cluster
]
_METRIC = re.compile(r'^knserve_revision_(\w+)\{[^}]*revision="([^"]+)"[^}]*\} (\S+)$', re.M)
ZYGOTE = re.compile(r"zygote ready \(pid (\d+)\)")
_SPAWN = re.compile(r"^(\S+ \S+) INFO \S+: revision \S+/(\S+) replica \d+: pid (\d+)", re.M)


def call(port: int, host: str | None, path: str, body: bytes | None = None) -> tuple[int, float]:
    """One request on a fresh connection: (status, seconds); status 0 when it could not connect."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Content-Type": "application/json"} | ({"Host": host} if host else {})
        conn.request("POST" if body else "GET", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status, time.perf_counter() - started
    except OSError:
        return 0, time.perf_counter() - started
    finally:
        conn.close()


def memory(pid: int) -> str:
    """RSS, PSS and USS: psutil's memory_full_info() when installed, else /proc smaps_rollup."""
    try:
        import psutil

        info = psutil.Process(pid).memory_full_info()
        rss, pss, uss = info.rss / 2**20, info.pss / 2**20, info.uss / 2**20
    except ImportError:
        try:
            kib = {}
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
                key, _, value = line.partition(":")
                kib[key] = int(value.split()[0])
        except OSError as exc:
            return f"memory unavailable ({exc})"
        rss, pss = kib["Rss"] / 1024, kib["Pss"] / 1024
        uss = (kib["Private_Clean"] + kib["Private_Dirty"]) / 1024
    except Exception as exc:  # psutil.NoSuchProcess, AccessDenied
        return f"memory unavailable ({exc!r})"
    return f"RSS {rss:.1f} MiB, PSS {pss:.1f} MiB, USS {uss:.1f} MiB"


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def stop_group(proc: subprocess.Popen[bytes], grace: float, term_group: bool = True) -> None:
    """SIGTERM the process (or its group: start_new_session), SIGKILL the group after `grace` s."""
    with contextlib.suppress(ProcessLookupError):
        (os.killpg if term_group else os.kill)(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def stats(values: list[float]) -> str:
    if not values:
        return "no samples"
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return f"min {ms[0]:7.1f}  median {statistics.median(ms):7.1f}  p95 {p95:7.1f} ms (n={len(ms)})"


class Plane:
    """`knserve up` in its own process group, with its log, metrics and CLI."""

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        autoscaler: list[str] = FAST,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.env, self.port, self.api_port = env, free_port(), free_port()
        self.log_path = root / "up.log"
        scaler = [a for kv in autoscaler for a in ("--autoscaler", kv)]
        argv = [
            sys.executable,
            "-m",
            "knserve.knative.cli",
            "up",
            "--data-dir",
            str(root / "data"),
            "--port",
            str(self.port),
            "--api-port",
            str(self.api_port),
            "--broker-port",
            str(free_port()),  # not the default 8082, which another plane may hold
            *scaler,
            *extra,
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=root,
            )
        for _ in range(600):  # ≤ 30 s
            if self.proc.poll() is not None or call(self.api_port, None, "/healthz")[0] == 200:
                break
            time.sleep(0.05)
        if self.proc.poll() is not None:
            raise RuntimeError(f"knserve up exited:\n{self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def cli(self, *args: str) -> str:
        env = {**self.env, "KNSERVE_API": f"http://127.0.0.1:{self.api_port}"}
        argv = [sys.executable, "-m", "knserve.knative.cli", *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"knserve {' '.join(args)}: {done.stderr}{done.stdout}")
        return done.stdout

    def apply(self, folder: Path, doc: dict[str, Any]) -> None:
        path = folder / f"{doc['metadata']['name']}.yaml"
        path.write_text(json.dumps(doc))  # JSON is YAML
        self.cli("apply", "-f", str(path))

    def metrics(self) -> dict[str, dict[str, float]]:
        url = f"http://127.0.0.1:{self.api_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        out: dict[str, dict[str, float]] = {}
        for name, revision, value in _METRIC.findall(text):
            out.setdefault(revision, {})[name] = float(value)
        return out

    def revision(self, prefix: str) -> dict[str, float]:
        found = {r: m for r, m in self.metrics().items() if r.startswith(prefix + "-")}
        return found[max(found)] if found else {}

    def spawned(self, revision_prefix: str, since: int = 0) -> list[tuple[float, int]]:
        """(wall time, pid) of each replica the supervisor started for the revision."""
        return [
            (_stamp(t), int(pid))
            for t, rev, pid in _SPAWN.findall(self.log()[since:])
            if rev.startswith(revision_prefix + "-")
        ]

    def wait_pods(
        self, prefix: str, test: Callable[[dict[str, float]], bool], limit: float
    ) -> bool:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and self.proc.poll() is None:
            if test(self.revision(prefix)):
                return True
            time.sleep(0.1)
        print(f"  ! {prefix}: pods never as wanted within {limit:.0f}s: {self.revision(prefix)}")
        return False

    def wait_spawned(self, prefix: str, limit: float = 120) -> None:
        """Until the supervisor has started a first replica (the revision exists and ran)."""
        deadline = time.monotonic() + limit
        while not self.spawned(prefix) and time.monotonic() < deadline:
            time.sleep(0.1)

    def wait_zero(self, prefix: str, limit: float = 60) -> None:
        """Scaled to zero on /metrics, and every replica process it had has exited."""
        if self.wait_pods(
            prefix, lambda m: m.get("actual_pods") == 0 == m.get("desired_pods"), limit
        ):
            deadline = time.monotonic() + 15
            while any(alive(p) for _, p in self.spawned(prefix)) and time.monotonic() < deadline:
                time.sleep(0.02)

    def close(self) -> None:
        log = self.log()
        pids = [p for _, p in self.spawned("")] + [int(p) for p in ZYGOTE.findall(log)]
        stop_group(self.proc, 30, term_group=False)  # the plane drains its replicas and zygote
        for pid in pids:  # they have their own sessions: only a plane that hung leaves them
            if alive(pid):
                print(f"  ! pid {pid} (replica or zygote) outlived the plane; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()
