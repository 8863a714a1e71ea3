"""The scale runner's plane: `knserve up` holding many Services, the objects it is filled with,
and the control-API calls the runner times (keep-alive HTTP on loopback, JSON both ways)."""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._autoscaling_plane import Plane

SERVING = "/apis/serving.knative.dev/v1/namespaces/default"
EVENTING = "/apis/eventing.knative.dev/v1/namespaces/default"
TRIGGERS_PER_BROKER = 100

# The cheapest replica that still is a real process on a real port: "ok" on keep-alive
# connections (GETs only), and its port in ports/{K_REVISION} so the runner can call it directly.
BACKEND = """\
import asyncio, os, pathlib
OK = b"HTTP/1.1 200 OK\\r\\ncontent-type: text/plain\\r\\ncontent-length: 2\\r\\n\\r\\nok"
class Backend(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while b"\\r\\n\\r\\n" in self.buffer:
            _, _, self.buffer = self.buffer.partition(b"\\r\\n\\r\\n")
            self.transport.write(OK)
async def main():
    port = int(os.environ["PORT"])
    server = await asyncio.get_running_loop().create_server(Backend, "127.0.0.1", port)
    folder = pathlib.Path(os.environ["SCALE_PORTS"])
    (folder / os.environ["K_REVISION"]).write_text(str(port))
    await server.serve_forever()
asyncio.run(main())
"""


class Api:
    """One keep-alive connection to the control API."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any, float]:
        """(status, decoded JSON body, seconds)."""
        headers = {"Content-Type": "application/json"}
        if method == "PATCH":
            headers["Content-Type"] = "application/merge-patch+json"
        data = None if body is None else json.dumps(body).encode()
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # uvicorn closes a keep-alive connection idle for 5 s: connect again, once
            self.conn.close()
            started = time.perf_counter()
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        raw = response.read()
        elapsed = time.perf_counter() - started
        return response.status, (json.loads(raw) if raw else None), elapsed

    def must(self, method: str, path: str, body: Any = None) -> Any:
        status, payload, _ = self.request(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path}: {status} {payload}")
        return payload

    def close(self) -> None:
        self.conn.close()


def service(name: str, root: Path, warm: bool) -> dict[str, Any]:
    """A Knative Service running the backend: one replica always (warm), or none until called."""
    scale = {"min-scale": "1", "max-scale": "1"} if warm else {"initial-scale": "0"}
    annotations = {f"autoscaling.knative.dev/{k}": v for k, v in scale.items()}
    container = {
        "image": "python",
        "command": [sys.executable, str(root / "backend.py")],
        "env": [{"name": "SCALE_PORTS", "value": str(root / "ports")}],
    }
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [container]},
            }
        },
    }


def is_ready(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class ScalePlane:
    """`knserve up` (Knative's default windows; initial-scale 0 allowed) in its own session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "ports").mkdir(parents=True, exist_ok=True)
        (root / "backend.py").write_text(BACKEND)
        self.plane = Plane(root, dict(os.environ), ["allow-zero-initial-scale=true"])
        self.proc, self.port, self.api_port = self.plane.proc, self.plane.port, self.plane.api_port
        self.api = Api(self.api_port)
        self.services: list[str] = []
        self.fillers = 0

    def grow(self, services: int, objects: int) -> None:
        """Create Services up to `services` (a quarter warm, at least one) and Triggers on Brokers
        until the store holds about `objects` objects (a Service makes four)."""
        for i in range(len(self.services), services):
            name = f"svc-{i:04d}"
            self.api.must("POST", f"{SERVING}/services", service(name, self.root, i % 4 == 0))
            self.services.append(name)
        want = max(0, objects - 4 * services)
        while self.fillers < want:
            broker, index = divmod(self.fillers, TRIGGERS_PER_BROKER + 1)
            if index == 0:
                body: dict[str, Any] = {"metadata": {"name": f"b-{broker:03d}"}}
                self.api.must("POST", f"{EVENTING}/brokers", body)
            else:
                body = {
                    "metadata": {"name": f"t-{broker:03d}-{index:03d}"},
                    "spec": {
                        "broker": f"b-{broker:03d}",
                        "filter": {"attributes": {"type": f"scale.{index}"}},
                        "subscriber": {"uri": "http://127.0.0.1:9/sink"},
                    },
                }
                self.api.must("POST", f"{EVENTING}/triggers", body)
            self.fillers += 1

    def wait_ready(self, limit: float = 240) -> float:
        """Seconds until every Service is Ready (raises after `limit`)."""
        started = time.monotonic()
        while time.monotonic() - started < limit:
            items = self.api.must("GET", f"{SERVING}/services")["items"]
            if len(items) >= len(self.services) and all(is_ready(o) for o in items):
                return time.monotonic() - started
            time.sleep(0.25)
        waiting = [o["metadata"]["name"] for o in items if not is_ready(o)]
        raise RuntimeError(f"Services not Ready after {limit:.0f}s: {waiting[:5]} …")

    def object_count(self) -> int:
        total = 0
        for base, plural in (
            (SERVING, "services"),
            (SERVING, "configurations"),
            (SERVING, "routes"),
            (SERVING, "revisions"),
            (EVENTING, "brokers"),
            (EVENTING, "triggers"),
        ):
            total += len(self.api.must("GET", f"{base}/{plural}")["items"])
        return total

    def cpu_seconds(self) -> float:
        """The plane process's user + system CPU so far (its replicas are other processes)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def replica_port(self, revision: str, limit: float = 60) -> int:
        path = self.root / "ports" / revision
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if path.exists() and path.read_text():
                return int(path.read_text())
            time.sleep(0.05)
        raise RuntimeError(f"revision {revision} never wrote its port")

    def close(self) -> None:
        self.api.close()
        self.plane.close()  # the plane drains and stops its replicas
