"""Autoscaling on the local plane, end to end, with Knative's windows shrunk to seconds."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

import pytest
from net_fixtures import eventually
from plane_fixtures import LocalPlane, apply, echo_service

pytestmark = pytest.mark.slow

SCALE = "autoscaling.knative.dev/"


def wait_pods(plane: LocalPlane, revision: str, actual: int, timeout: float) -> None:
    def reached() -> bool:
        seen = plane.metrics().get(revision, {})
        return seen.get("actual_pods") == actual and seen.get("desired_pods") == actual

    # the plane is another process; its metrics are what we can observe
    eventually(
        reached,
        timeout,
        interval=0.1,
        failure=lambda: (
            f"{revision} never reached {actual} pods: {plane.metrics().get(revision, {})}\n{plane.log()[-3000:]}"
        ),
    )


def test_scales_up_under_a_step_load_within_max_scale_and_back_to_zero(
    fast_plane: LocalPlane, tmp_path: Path
) -> None:
    plane = fast_plane
    scaled = echo_service(
        metadata={"annotations": {SCALE + "target": "1", SCALE + "max-scale": "3"}}
    )
    kept = echo_service(name="kept", metadata={"annotations": {SCALE + "min-scale": "1"}})
    apply(plane, tmp_path, scaled, kept)
    plane.wait_ready("services", "echo")
    plane.wait_ready("services", "kept")

    timeline: list[tuple[float, dict[str, float]]] = []
    stop = threading.Event()

    scaled_up = threading.Event()

    def watch() -> None:
        start = time.monotonic()
        while not stop.is_set():
            sample = plane.metrics().get("echo-00001", {})
            timeline.append((time.monotonic() - start, sample))
            if sample.get("actual_pods", 0) >= 3:
                scaled_up.set()
            stop.wait(0.2)

    def client(deadline: float) -> list[int]:
        codes = []
        # the load holds until the revision has scaled to max-scale (bounded): a busy machine
        # starts replicas more slowly, and the assertion is about where it goes, not how fast
        while time.monotonic() < deadline and not scaled_up.is_set():
            codes.append(plane.call("echo.default.localhost", "/sleep?s=0.2").status_code)
        return codes

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        # a step of 6 concurrent clients: 6 / (1 × 70 %) wants 9 replicas, max-scale caps at 3
        deadline = time.monotonic() + 60
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = [c for result in pool.map(client, [deadline] * 6) for c in result]
        assert codes and set(codes) == {200}, f"{len(codes) - codes.count(200)} requests failed"
        peak = max(sample.get("actual_pods", 0) for _, sample in timeline)
        assert peak == 3, timeline
        assert max(sample.get("desired_pods", 0) for _, sample in timeline) == 3

        # idle: back to zero after the stable window and the grace period; min-scale 1 stays at 1
        wait_pods(plane, "echo-00001", 0, timeout=30)
    finally:
        stop.set()
        watcher.join()
    assert plane.metrics()["kept-00001"]["actual_pods"] == 1
    revision = plane.get("revisions", "echo-00001")
    conditions = {c["type"]: c for c in revision["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True"  # scaled to zero is still ready
    assert conditions["Active"]["reason"] == "NoTraffic"
    assert revision["status"]["annotations"] == {SCALE + "panic": "false"}

    # a request at zero is held, the revision scaled up, and the request answered
    started = time.monotonic()
    answer = plane.call("echo.default.localhost")
    cold = time.monotonic() - started
    assert answer.status_code == 200
    assert answer.json()["revision"] == "echo-00001"
    assert cold < 30
    plane.wait_for("revisions", "echo-00001", lambda r: r["status"].get("actualReplicas") == 1)
    described = plane.knserve("revision", "describe", "echo-00001").stdout
    assert "Replicas:   1/1 (panic: no)" in described, described


def test_a_bad_autoscaler_setting_stops_knserve_up_with_the_fix(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "knserve.knative.cli",
            "up",
            "--data-dir",
            str(tmp_path),
            "--autoscaler",
            "stable-window=2s",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "stable-window = 2s, must be in [6s; 1h0m0s] range" in result.stderr
