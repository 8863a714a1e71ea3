"""Knative's HPA class on the local plane, end to end: real processes burning real CPU (and
holding real memory), measured from /proc and scaled by Kubernetes' HPA algorithm."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from net_fixtures import ServerProcess, eventually
from plane_fixtures import FAST_AUTOSCALER, LocalPlane, apply

pytestmark = pytest.mark.slow

A = "autoscaling.knative.dev/"
BURNER = str(Path(__file__).parent.parent / "support" / "cpu_burner.py")


@pytest.fixture
def hpa_plane(spawn: Callable[..., ServerProcess], tmp_path: Path) -> Iterator[LocalPlane]:
    """A plane whose HPA stabilizes scale-down over 6 s instead of Kubernetes' 300 s."""
    args = [
        *FAST_AUTOSCALER,
        "--autoscaler",
        "horizontal-pod-autoscaler-downscale-stabilization=6s",
    ]
    local = LocalPlane(spawn, tmp_path / "plane", args)
    yield local
    local.close()


def burner(name: str, annotations: dict[str, str], env: dict[str, str] | None = None) -> Any:
    container: dict[str, Any] = {"image": "python", "command": [sys.executable, BURNER]}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {A + "class": "hpa.autoscaling.knative.dev", **annotations}
                },
                "spec": {"containers": [container]},
            }
        },
    }


def wait_metrics(
    plane: LocalPlane, revision: str, check: Callable[[dict[str, float]], bool], timeout: float
) -> dict[str, float]:
    # the plane is another process: its /metrics are what can be observed
    return eventually(
        lambda: (m := plane.metrics().get(revision, {})) and check(m) and m,
        timeout,
        lambda: f"{revision}: {plane.metrics().get(revision)}\n{plane.log()[-4000:]}",
        interval=0.2,
    )


def test_a_cpu_burning_model_scales_1_to_3_under_load_and_back_to_1(
    hpa_plane: LocalPlane, tmp_path: Path
) -> None:
    plane = hpa_plane
    # 25 % of one core per replica (no CPU request: the plane's is one core), at most 3
    apply(
        plane,
        tmp_path,
        burner("burn", {A + "metric": "cpu", A + "target": "25", A + "max-scale": "3"}),
    )
    plane.wait_ready("services", "burn")
    idle = wait_metrics(plane, "burn-00001", lambda m: "hpa_current_metric" in m, 30)
    assert idle["desired_pods"] == idle["actual_pods"] == 1
    assert idle["hpa_target_metric"] == 25
    assert idle["hpa_current_metric"] < 25  # an idle server

    scaled = threading.Event()
    answered: list[int] = []

    def client(deadline: float) -> None:
        # bounded: until the revision is at 3 ready replicas (or the deadline)
        while time.monotonic() < deadline and not scaled.is_set():
            answered.append(plane.call("burn.default.localhost", "/burn?ms=40").status_code)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        clients = [pool.submit(client, time.monotonic() + 120) for _ in range(3)]
        try:
            busy = wait_metrics(plane, "burn-00001", lambda m: m.get("actual_pods") == 3, 120)
        finally:
            scaled.set()
        for done in clients:
            done.result()
    assert answered and set(answered) == {200}
    assert busy["desired_pods"] == 3  # max-scale: one busy replica alone wanted 4
    assert busy["cpu_millicores"] > 250

    # idle again: after the 6 s stabilization window, back to min (1), never to zero
    settled = wait_metrics(
        plane, "burn-00001", lambda m: m.get("actual_pods") == 1 == m.get("desired_pods"), 60
    )
    assert settled["hpa_current_metric"] < 25
    plane.wait_autoscaler_ticks(8)  # well past the window: still one replica
    assert plane.metrics()["burn-00001"]["actual_pods"] == 1
    revision = plane.get("revisions", "burn-00001")
    conditions = {c["type"]: c["status"] for c in revision["status"]["conditions"]}
    assert conditions["Ready"] == conditions["Active"] == "True"
    assert revision["status"]["actualReplicas"] == 1


def test_a_memory_target_scales_on_resident_memory(hpa_plane: LocalPlane, tmp_path: Path) -> None:
    plane = hpa_plane
    # each replica holds 80 MiB; against 50 MiB per replica one is too few: 2 (max-scale)
    service = burner(
        "mem",
        {A + "metric": "memory", A + "target": "50", A + "max-scale": "2"},
        {"BALLAST_MIB": "80"},
    )
    apply(plane, tmp_path, service)
    plane.wait_ready("services", "mem")
    mib = 1024 * 1024
    # both replicas measured (the second one's sample lands a second after it is ready)
    scaled = wait_metrics(
        plane,
        "mem-00001",
        lambda m: m.get("actual_pods") == 2 and m.get("memory_bytes", 0) > 2 * 80 * mib,
        60,
    )
    assert scaled["desired_pods"] == 2
    assert scaled["hpa_target_metric"] == 50 * mib
    assert scaled["hpa_current_metric"] > 80 * mib


def test_a_raw_deployment_inference_service_runs_on_the_hpa_and_never_scales_to_zero(
    hpa_plane: LocalPlane, tmp_path: Path
) -> None:
    plane = hpa_plane
    container = {"name": "kserve-container", "image": "python", "command": [sys.executable, BURNER]}
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "raw",
            "namespace": "default",
            "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
        },
        # minReplicas 0 would scale to zero under Knative; KServe's raw HPA keeps one
        "spec": {"predictor": {"minReplicas": 0, "maxReplicas": 2, "containers": [container]}},
    }
    apply(plane, tmp_path, isvc)
    plane.wait_ready("inferenceservices", "raw", timeout=90)
    ksvc = plane.get("services", "raw-predictor")
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert annotations[A + "class"] == "hpa.autoscaling.knative.dev"
    assert (annotations[A + "metric"], annotations[A + "target"]) == ("cpu", "80")
    assert plane.call("raw.default.localhost", "/").status_code == 200
    plane.wait_autoscaler_ticks(10)  # past the 1 s grace period and the 6 s windows, idle
    seen = plane.metrics()["raw-predictor-00001"]
    assert seen["actual_pods"] == seen["desired_pods"] == 1
