"""`knserve up` as a real subprocess on free loopback ports, and ways to talk to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from net_fixtures import ServerProcess, eventually, free_port, serve_in_thread

from knserve.knative.apiserver.client import Client
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store

ECHO = str(Path(__file__).parent / "echo_server.py")


def echo_service(name: str = "echo", greeting: str = "hello", **template: Any) -> dict[str, Any]:
    spec = {
        "containers": [
            {
                "image": "python",
                "command": [sys.executable, ECHO],
                "args": ["$(PORT)", "$(GREETING)", "$$(PORT)"],
                "env": [{"name": "GREETING", "value": greeting}],
            }
        ],
    }
    spec.update(template.pop("spec", {}))
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"template": {"spec": spec, **template}},
    }


def apply(plane: LocalPlane, tmp_path: Path, *docs: dict[str, Any]) -> str:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = plane.knserve("apply", "-f", str(path))
    assert result.returncode == 0, result.stderr
    return result.stdout


def built_function(plane: LocalPlane, template: str, folder: Path) -> str:
    """A function made from `template` in `folder` and built; its image reference."""
    created = plane.knserve("func", "create", "-t", template, folder.name, "--path", str(folder))
    assert created.returncode == 0, created.stderr
    built = plane.knserve("func", "build", "--path", str(folder))
    assert built.returncode == 0, built.stderr
    return built.stdout.split()[0]


class LocalPlane:
    """One `knserve up` started by a test; `restart()` stops and starts it on the same data dir."""

    def __init__(
        self, spawn: Callable[..., ServerProcess], data_dir: Path, args: Sequence[str] = ()
    ) -> None:
        self._spawn = spawn
        self.args = list(args)
        self.data_dir = data_dir
        self.port = free_port()
        self.api_port = free_port()
        self.broker_port = free_port()
        self.broker = f"http://127.0.0.1:{self.broker_port}"
        self.gateway = f"http://127.0.0.1:{self.port}"
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.process: ServerProcess = self._start()
        self.client = Client(self.api)
        self.http = httpx.Client(base_url=self.gateway, timeout=60.0)

    def _start(self) -> ServerProcess:
        process = self._spawn(
            [
                sys.executable,
                "-m",
                "knserve.knative.cli",
                "up",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--api-port",
                str(self.api_port),
                "--broker-port",
                str(self.broker_port),
                "--log-level",
                "debug",
                *self.args,
            ]
        )
        process.wait_http(f"http://127.0.0.1:{self.api_port}/healthz")
        return process

    def restart(self) -> None:
        code = self.process.stop()
        assert code == 0, f"knserve up exited with {code} on SIGTERM:\n{self.process.log()}"
        self.process = self._start()

    def kill_and_restart(self) -> None:
        """`kill -9` the plane, as a crash would, then start it again on the same data dir and
        ports. Only the plane is killed: what it started must die with it (the parent-death
        signal), and the restarted plane stops any stale process it recorded."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.proc.wait(10)
        self.start_again()

    def start_again(self) -> None:
        """Start the plane again on the same data dir and ports, once the test has ended its
        process (a crash it caused)."""
        self.process.stop()  # closes its log; the process is gone already
        self.process = self._start()

    def log(self) -> str:
        return self.process.log()

    def knserve(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The CLI as a user runs it, pointed at this plane."""
        return subprocess.run(
            [sys.executable, "-m", "knserve.knative.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "KNSERVE_API": self.api},
        )

    def get(self, kind: str, name: str, namespace: str = "default") -> dict[str, Any]:
        return self.client.get(by_name(kind), namespace, name)

    def wait_for(
        self,
        kind: str,
        name: str,
        condition: Callable[[dict[str, Any]], bool],
        timeout: float = 60.0,
        namespace: str = "default",
    ) -> dict[str, Any]:
        """Poll the object until `condition` holds; fail with its status and the plane's log."""

        def met() -> dict[str, Any] | None:
            obj = self.get(kind, name, namespace)
            return obj if condition(obj) else None

        # the plane is another process: polling its API is the only signal
        return eventually(
            met,
            timeout,
            lambda: (
                f"{kind}/{name} never met the condition; status: "
                f"{self.get(kind, name, namespace).get('status')}\n{self.log()}"
            ),
        )

    def wait_ready(self, kind: str, name: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_for(
            kind, name, lambda o: is_ready(o, o["metadata"]["generation"]), timeout
        )

    def call(
        self, host: str, path: str = "/", method: str = "GET", **kwargs: Any
    ) -> httpx.Response:
        """A request through the gateway for `host`, as DNS would route it on a cluster."""
        headers = {"host": host, **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def metrics(self) -> dict[str, dict[str, float]]:
        """revision -> {desired_pods, actual_pods, panic_mode, requests_total, …} from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        out: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(self.client.http.get("/metrics").text):
            for sample in family.samples:
                if "revision" in sample.labels:
                    name = sample.name.removeprefix("knserve_revision_")
                    out.setdefault(sample.labels["revision"], {})[name] = sample.value
        return out

    def wait_scaled_to_zero(self, revision: str, timeout: float = 60.0) -> None:
        """Wait until the revision has no ready replica (from /metrics)."""
        # the autoscaler's tick is 1 s; its metrics are the only signal
        eventually(
            lambda: self.metrics().get(revision, {}).get("actual_pods") == 0,
            timeout,
            lambda: f"{revision} never scaled to zero: {self.metrics()}",
            interval=0.2,
        )

    def wait_autoscaler_ticks(self, count: int, timeout: float = 60.0) -> None:
        """Wait until the autoscaler has run `count` more decision rounds (from /metrics)."""

        def ticks() -> float:
            text = self.client.http.get("/metrics").text
            return next(
                float(line.split()[1])
                for line in text.splitlines()
                if line.startswith("knserve_autoscaler_ticks_total ")
            )

        target = ticks() + count
        # the plane is another process: its metrics are what can be observed
        eventually(lambda: ticks() >= target, timeout, f"the autoscaler did not tick {count} times")

    def close(self) -> None:
        self.http.close()
        self.client.http.close()


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first); None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of a live process, from /proc; None if gone."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[1]), int(fields[19]))


def descendants(root: int) -> dict[int, int]:
    """`root` and every process below it: pid -> start time (to tell a reused pid apart)."""
    children: dict[int, list[int]] = {}
    started: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
            started[int(entry.name)] = stat[1]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in started and pid not in found:
            found[pid] = started[pid]
            todo.extend(children.get(pid, []))
    return found


def kill_if_same(pid: int, started: int, sig: int) -> None:
    """Signal `pid` only if it is still the process that started at `started`."""
    stat = _stat(pid)
    if stat is not None and stat[1] == started:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def running(pid: int, started: int) -> bool:
    """Whether `pid` is still the process that started at `started`, and not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z" and int(fields[19]) == started


def is_ready(obj: dict[str, Any], generation: int | None = None) -> bool:
    status = obj.get("status") or {}
    if generation is not None and status.get("observedGeneration") != generation:
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
    )


@pytest.fixture
def control_api() -> Iterator[Client]:
    """The control API alone (no controller acts on what it stores), served in process from an
    in-memory store, and a client of it."""
    store = Store()
    with serve_in_thread(create_app(store)) as url:
        client = Client(url)
        yield client
        client.http.close()
    store.close()


@pytest.fixture
def plane(spawn: Callable[..., ServerProcess], tmp_path: Path) -> Iterator[LocalPlane]:
    """A fresh local plane for one test, stopped (with its replicas) at teardown."""
    local = LocalPlane(spawn, tmp_path / "plane")
    yield local
    local.close()


# Knative's windows shrunk to seconds, so scaling tests see whole cycles quickly.
FAST_AUTOSCALER = [
    "--autoscaler",
    "stable-window=6s",
    "--autoscaler",
    "scale-to-zero-grace-period=1s",
    "--autoscaler",
    "tick-interval=1s",
]


@pytest.fixture
def fast_plane(spawn: Callable[..., ServerProcess], tmp_path: Path) -> Iterator[LocalPlane]:
    """A local plane whose autoscaler uses a 6 s stable window and a 1 s grace period."""
    local = LocalPlane(spawn, tmp_path / "plane", FAST_AUTOSCALER)
    yield local
    local.close()
