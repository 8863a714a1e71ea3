"""`knserve up` with containers that insist on fixed ports, as KServe's YAML and servers do: each
replica's declared port is its own port, its other fixed ports free ones, and it becomes Ready."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import joblib
import pytest
from plane_fixtures import LocalPlane, apply

pytestmark = pytest.mark.slow

SERVER = str(Path(__file__).parents[1] / "support" / "fixed_port_server.py")


def service(name: str, container: dict[str, Any], replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "metadata": {"annotations": {"autoscaling.knative.dev/min-scale": str(replicas)}},
                "spec": {"containers": [{"image": "python", **container}]},
            }
        },
    }


def both_ready(plane: LocalPlane, revision: str) -> None:
    plane.wait_for("revisions", revision, lambda r: r.get("status", {}).get("actualReplicas") == 2)


def answers_from_every_replica(plane: LocalPlane, host: str, path: str = "/") -> list[Any]:
    """One answer per replica pid, calling until both replicas have answered."""
    seen: dict[int, Any] = {}
    for _ in range(200):  # the gateway balances over ready replicas: both answer soon
        body = plane.call(host, path).json()
        seen[body["pid"]] = body
        if len(seen) == 2:
            return list(seen.values())
    raise AssertionError(f"only {len(seen)} replica answered through the gateway")


def test_two_replicas_that_insist_on_8080_and_8081_both_become_ready_and_answer(
    plane: LocalPlane, tmp_path: Path
) -> None:
    apply(plane, tmp_path, service("fixed", {"command": [sys.executable, SERVER, "8080", "8081"]}))
    plane.wait_ready("services", "fixed")
    both_ready(plane, "fixed-00001")
    answers = answers_from_every_replica(plane, "fixed.default.localhost")
    http_ports = {a["http"][1] for a in answers}
    other_ports = {a["others"][0][1] for a in answers}
    assert len(http_ports) == len(other_ports) == 2  # each replica its own ports
    assert not {8080, 8081} & (http_ports | other_ports)
    assert all(a["http"][0] == "127.0.0.1" and a["others"][0][0] == "::1" for a in answers)
    log_dir = plane.data_dir / "logs"
    logs = "".join(p.read_text() for p in log_dir.glob("default_fixed-00001_*.log"))
    for port in http_ports:
        assert f"bind 127.0.0.1 port 8080 -> 127.0.0.1 port {port}" in logs


def test_a_declared_container_port_and_its_readiness_probe_are_the_replicas_port(
    plane: LocalPlane, tmp_path: Path
) -> None:
    container = {
        "command": [sys.executable, SERVER, "9000"],
        "ports": [{"name": "http1", "containerPort": 9000}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 9000}},
    }
    named = {**container, "readinessProbe": {"tcpSocket": {"port": "http1"}}}
    apply(plane, tmp_path, service("nine", container), service("named", named, replicas=1))
    plane.wait_ready("services", "nine")
    both_ready(plane, "nine-00001")
    answers = answers_from_every_replica(plane, "nine.default.localhost")
    assert len({a["http"][1] for a in answers}) == 2 and 9000 not in {a["http"][1] for a in answers}
    plane.wait_ready("services", "named")
    assert plane.call("named.default.localhost", "/ready").status_code == 200


def test_knserves_runtime_with_kserves_http_port_8080_serves_from_two_replicas(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    args = ["--model_name=iris", f"--model_dir={sklearn_iris_dir}", "--http_port=8080"]
    command = [sys.executable, "-m", "knserve.runtime", *args]
    apply(plane, tmp_path, service("iris", {"command": command}))
    plane.wait_ready("services", "iris", timeout=120)
    model = joblib.load(sklearn_iris_dir / "model.joblib")
    rows = [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]
    expected = model.predict(rows).tolist()
    for _ in range(6):
        response = plane.call(
            "iris.default.localhost", "/v1/models/iris:predict", "POST", json={"instances": rows}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
    both_ready(plane, "iris-00001")
    logs = [p.read_text() for p in (plane.data_dir / "logs").glob("default_iris-00001_*.log")]
    serving = {line for log in logs for line in log.splitlines() if "serving on" in line}
    ports = {int(line.rsplit(":", 1)[1]) for line in serving}
    assert len(ports) == 2 and 8080 not in ports, serving
