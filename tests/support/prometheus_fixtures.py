"""A real Prometheus server (Debian's `prometheus`) for the tests, on a free loopback port.

`start_prometheus` runs it with a given configuration and a throwaway TSDB in the test's folder;
`PrometheusApi` speaks its HTTP API (`/api/v1/query`, `/api/v1/targets`) and waits for results.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from debian_packages import ensure_debian
from net_fixtures import ServerProcess, eventually, free_port


class PrometheusApi:
    """Prometheus' HTTP API at `url`."""

    def __init__(self, url: str, process: ServerProcess) -> None:
        self.url = url
        self.process = process
        self.http = httpx.Client(base_url=url, timeout=10.0, trust_env=False)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector `promql` evaluates to now; a query Prometheus refuses fails."""
        response = self.http.get("/api/v1/query", params={"query": promql})
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (promql, body)
        assert body["data"]["resultType"] == "vector", (promql, body)
        return list(body["data"]["result"])

    def wait_for(
        self,
        promql: str,
        accept: Callable[[list[dict[str, Any]]], bool] = bool,
        timeout: float = 60.0,
    ) -> list[dict[str, Any]]:
        """Poll `promql` until it has a finite value and `accept(result)` holds."""
        seen: list[list[dict[str, Any]]] = [[]]

        def probe() -> list[dict[str, Any]] | None:
            result = [r for r in self.query(promql) if math.isfinite(float(r["value"][1]))]
            seen[0] = result
            return result if result and accept(result) else None

        # Prometheus is another process that scrapes on its own clock: its API is the signal.
        return eventually(
            probe,
            timeout,
            lambda: (
                f"{promql}\nnever returned acceptable data; last: {seen[0]}\n"
                f"targets: {self.targets()}"
            ),
            interval=0.5,
        )

    def targets(self) -> list[dict[str, Any]]:
        return list(self.http.get("/api/v1/targets").json()["data"]["activeTargets"])


def start_prometheus(
    spawn: Callable[..., ServerProcess], config: dict[str, Any], folder: Path
) -> PrometheusApi:
    """Prometheus with `config` on 127.0.0.1, its data in `folder`; ready when this returns."""
    ensure_debian({"prometheus": "prometheus"})
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    process = spawn(
        [
            "prometheus",
            f"--config.file={config_file}",
            f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]
    )
    url = f"http://127.0.0.1:{port}"
    process.wait_http(f"{url}/-/ready", timeout=60)
    return PrometheusApi(url, process)
