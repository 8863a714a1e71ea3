"""Logs on a real `knserve up --log-format json --access-log`: JSON lines from the plane and its
replicas, the gateway's access log, and `knserve logs` merging, filtering and following replicas."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from net_fixtures import ServerProcess, eventually
from plane_fixtures import FAST_AUTOSCALER, LocalPlane, apply

pytestmark = pytest.mark.slow

HOST = "iris.default.localhost"
REVISION = "iris-predictor-00001"


JSON_LOGS = ["--log-format", "json", "--access-log"]


@pytest.fixture
def json_plane(spawn: Callable[..., ServerProcess], tmp_path: Path) -> Iterator[LocalPlane]:
    """A plane logging JSON, whose replicas stay up for the test (Knative's 60 s window)."""
    local = LocalPlane(spawn, tmp_path / "plane", JSON_LOGS)
    yield local
    local.close()


@pytest.fixture
def fast_json_plane(spawn: Callable[..., ServerProcess], tmp_path: Path) -> Iterator[LocalPlane]:
    """A plane logging JSON whose idle revisions go to zero within seconds."""
    local = LocalPlane(spawn, tmp_path / "plane", [*FAST_AUTOSCALER, *JSON_LOGS])
    yield local
    local.close()


def iris(storage: Path) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "default"},
        "spec": {
            "predictor": {
                "minReplicas": 0,
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": f"file://{storage}",
                    "env": [{"name": "KNSERVE_LOG_LEVEL", "value": "info"}],
                },
            }
        },
    }


def predict(plane: LocalPlane, request_id: str) -> bytes:
    response = plane.call(
        HOST,
        "/v1/models/iris:predict",
        "POST",
        json={"instances": [[6.8, 2.8, 4.8, 1.4]]},
        headers={"x-request-id": request_id},
    )
    assert response.status_code == 200, response.text
    return response.content


def test_json_lines_the_access_log_and_knserve_logs(
    json_plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    plane = json_plane
    apply(plane, tmp_path, iris(sklearn_iris_dir))
    plane.wait_ready("inferenceservices", "iris", timeout=90)
    body = predict(plane, "logs-1")

    # the plane's own lines are JSON (the prints for a person aside), the access log among them
    def access_line() -> dict[str, Any] | None:
        lines = [json.loads(x) for x in plane.log().splitlines() if x.startswith("{")]
        return next((x for x in lines if x.get("request_id") == "logs-1"), None)

    access = eventually(access_line, 10, lambda: f"no access-log line:\n{plane.log()[-3000:]}")
    assert access["logger"] == "knserve.access"
    assert (access["method"], access["host"], access["path"]) == (
        "POST",
        HOST,
        "/v1/models/iris:predict",
    )
    assert (access["status"], access["bytes"]) == (200, len(body))
    assert access["revision"] == f"default/{REVISION}"
    assert access["replica"].startswith("127.0.0.1:") and access["duration_ms"] > 0
    banner = ("knserve is up", "dashboard: ", "kubectl: context ", "Prometheus config: ")
    for line in plane.log().splitlines():  # JSON but for the few lines a person reads at start
        assert line.startswith(("{", *banner)), line

    # knserve logs: every replica's lines, prefixed with the replica
    logs = plane.knserve("logs", "iris", "--data-dir", str(plane.data_dir))
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert lines and all(x.startswith(f"[{REVISION}-0] ") for x in lines), logs.stdout
    records = [json.loads(x.split("] ", 1)[1]) for x in lines if "] {" in x]
    assert any(r["logger"].startswith("uvicorn") for r in records), logs.stdout
    assert {r.get("replica") for r in records} == {f"{REVISION}-0"}
    for name in ("iris-predictor", REVISION):  # a Service, a Revision: the same replicas
        same = plane.knserve("logs", name, "--data-dir", str(plane.data_dir))
        assert same.stdout == logs.stdout, same.stderr
    tail = plane.knserve("logs", REVISION, "--tail", "1", "--data-dir", str(plane.data_dir))
    assert tail.stdout.splitlines() == lines[-1:]
    recent = plane.knserve("logs", "iris", "--since", "1h", "--data-dir", str(plane.data_dir))
    assert recent.stdout and set(recent.stdout.splitlines()) <= set(lines)
    assert all("] {" in x for x in recent.stdout.splitlines())  # only lines with a time

    wrong = plane.knserve("logs", "iris", "-c", "transformer")
    assert wrong.returncode == 1
    assert "InferenceService default/iris has no transformer; its components are predictor" in (
        wrong.stderr
    )
    missing = plane.knserve("logs", "nothing")
    assert "no InferenceService, Service or Revision named 'nothing'" in missing.stderr


def test_knserve_logs_follows_a_replica_that_starts_later(
    fast_json_plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    plane = fast_json_plane
    apply(plane, tmp_path, iris(sklearn_iris_dir))
    plane.wait_ready("inferenceservices", "iris", timeout=90)
    plane.wait_scaled_to_zero(REVISION)  # the autoscaler ticks every second
    follow = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "knserve.knative.cli",
            "logs",
            "iris",
            "-f",
            "--data-dir",
            str(plane.data_dir),
            "--api",
            plane.api,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    woken = threading.Event()

    def read() -> None:
        assert follow.stdout is not None
        for line in follow.stdout:
            seen.append(line)
            if line.startswith(f"[{REVISION}-1] "):
                woken.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        predict(plane, "wake-up")  # the activator starts replica 1, whose lines -f must print
        assert woken.wait(30), "".join(seen)
    finally:
        follow.terminate()
        follow.wait(10)
        reader.join(5)
    assert any(x.startswith(f"[{REVISION}-0] ") for x in seen)  # the earlier replica's too
