"""A plane killed with `kill -9` leaves nothing running, and the next one stops what it recorded."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from net_fixtures import eventually
from plane_fixtures import LocalPlane, apply, descendants, echo_service, kill_if_same, running

from knserve.knative.supervisor.process_records import ProcessRecords, start_time

TWO = {"autoscaling.knative.dev/min-scale": "2", "autoscaling.knative.dev/max-scale": "2"}
SETOSA = [6.8, 2.8, 4.8, 1.4]


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )


async def test_a_restarted_plane_stops_what_it_recorded_and_only_that(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    crashed_plane = (gone.pid, start_time(gone.pid))
    gone.wait()
    left, reused, other_planes = sleeper(), sleeper(), sleeper()
    try:
        records = ProcessRecords(tmp_path / "processes")
        records.plane = crashed_plane
        records.add(left.pid)
        records.add(reused.pid)
        # the kernel gave `reused`'s pid to another process since: its start time is not ours
        path = tmp_path / "processes" / str(reused.pid)
        path.write_text(
            path.read_text().replace(
                f'"start": {start_time(reused.pid)}', f'"start": {start_time(reused.pid) - 1}'
            )
        )
        ProcessRecords(tmp_path / "processes").add(other_planes.pid)  # a plane that still runs

        assert await ProcessRecords(tmp_path / "processes").stop_stale() == [left.pid]

        assert left.wait(5) == -signal.SIGKILL
        assert reused.poll() is None and other_planes.poll() is None
        assert sorted(p.name for p in (tmp_path / "processes").iterdir()) == [str(other_planes.pid)]
    finally:
        for process in (left, reused, other_planes):
            process.kill()
            process.wait()


def load(plane: LocalPlane, stop: threading.Event, answered: list[int]) -> None:
    """Requests to both services, one after another, until `stop` (at most 2000, or 60 s)."""
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=plane.gateway, timeout=5) as client:
        for i in range(2000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                if i % 2:
                    client.get("/", headers={"host": "echo.default.localhost"})
                else:
                    client.post(
                        "/v1/models/sklearn-iris:predict",
                        json={"instances": [SETOSA]},
                        headers={"host": "sklearn-iris.default.localhost"},
                    )
                answered.append(i)
            except httpx.TransportError:
                pass  # the plane is being killed


def ready_replicas(plane: LocalPlane) -> dict[str, float]:
    return {r: m.get("actual_pods", 0) for r, m in plane.metrics().items()}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def plane_processes(plane: LocalPlane) -> dict[int, int]:
    """What runs below the plane, and whatever names its data dir (the zygote does)."""
    found = descendants(plane.process.pid)
    for pid in (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()):
        if str(plane.data_dir) in cmdline(pid) and (started := start_time(pid)) is not None:
            found[pid] = started
    return {pid: t for pid, t in found.items() if running(pid, t)}


@pytest.mark.slow
def test_kill_9_under_load_leaves_nothing_and_the_restarted_plane_serves_as_before(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    isvc: dict[str, Any] = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "sklearn-iris", "namespace": "default"},
        "spec": {
            "predictor": {
                "minReplicas": 2,
                "maxReplicas": 2,
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": f"file://{sklearn_iris_dir}",
                },
            }
        },
    }
    apply(plane, tmp_path, isvc, echo_service(metadata={"annotations": TWO}))
    revisions = {"sklearn-iris-predictor-00001": 2, "echo-00001": 2}

    def all_up() -> bool:
        return all(ready_replicas(plane).get(r) == n for r, n in revisions.items())

    eventually(
        all_up, 120, lambda: f"replicas never all ready: {ready_replicas(plane)}\n{plane.log()}"
    )
    before = plane_processes(plane)
    zygote = [
        pid for pid in before if parent(pid) == plane.process.pid and "zygote" in cmdline(pid)
    ]
    assert len(zygote) == 1
    # the model servers are forked (the zygote's other child is the revision's warm template)
    servers = re.findall(r"revision default/sklearn-iris-\S+ replica \d+: pid (\d+)", plane.log())
    assert len(servers) == 2 and all(parent(int(pid)) == zygote[0] for pid in servers)
    assert len([pid for pid in before if "echo_server.py" in cmdline(pid)]) == 2  # exec'd

    stop, answered = threading.Event(), []
    driver = threading.Thread(target=load, args=(plane, stop, answered), name="load")
    driver.start()
    doomed: dict[int, int] = {}
    try:
        eventually(lambda: len(answered) >= 20, 30, "the load never got answers")
        doomed = plane_processes(plane)
        os.kill(plane.process.pid, signal.SIGKILL)
        plane.process.proc.wait(10)
        eventually(
            lambda: (
                not [p for p, t in doomed.items() if running(p, t)] and not plane_processes(plane)
            ),
            2.0,
            lambda: (
                f"still running after the plane's kill -9: "
                f"{ {p: cmdline(p) for p, t in doomed.items() if running(p, t)} }"
            ),
        )
    finally:
        stop.set()
        driver.join(30)
        for pid, started in doomed.items():  # a failed run must not leave them behind either
            kill_if_same(pid, started, signal.SIGKILL)

    plane.start_again()
    eventually(
        all_up,
        120,
        lambda: f"replicas never all ready again: {ready_replicas(plane)}\n{plane.log()}",
    )
    answer = plane.call(
        "sklearn-iris.default.localhost",
        "/v1/models/sklearn-iris:predict",
        "POST",
        json={"instances": [SETOSA]},
    )
    assert answer.json() == {"predictions": [1]}
    assert plane.call("echo.default.localhost").status_code == 200
    after = plane_processes(plane)
    assert len([pid for pid in after if "echo_server.py" in cmdline(pid)]) == 2
    assert len(after) == len(before)  # the plane, its zygote and four replicas: nothing beside them
