"""A revision's lifecycle on the local plane as Knative writes and runs it: deletion stops its
replicas for good, initial-scale gates Ready, an unrouted revision stays Ready but inactive."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from net_fixtures import eventually
from plane_fixtures import ECHO, FAST_AUTOSCALER, LocalPlane, apply, echo_service

from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.store import Store

pytestmark = pytest.mark.slow

SCALE = "autoscaling.knative.dev/"
HOST = "echo.default.localhost"

# The echo server, first appending its pid to a file (the replicas a revision ever started,
# whoever started them, seen from outside the plane), the n-th start after n × STAGGER seconds.
RECORD_START = """
import os, runpy, sys, time
starts, stagger = sys.argv[1], float(sys.argv[2])
with open(starts, "a") as file:
    file.write(f"{os.getpid()}\\n")
with open(starts) as file:
    time.sleep(stagger * (len(file.read().split()) - 1))
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def recorded(starts: Path, stagger: float = 0.0) -> dict[str, Any]:
    """A container that records each start in `starts`, then serves as the echo server."""
    return {
        "image": "python",
        "command": [sys.executable, "-c", RECORD_START, str(starts), str(stagger), ECHO],
        "args": ["$(PORT)"],
    }


def recorded_service(
    name: str, starts: Path, annotations: dict[str, str], stagger: float = 0.0
) -> dict[str, Any]:
    svc = echo_service(name, metadata={"annotations": annotations})
    svc["spec"]["template"]["spec"]["containers"] = [recorded(starts, stagger)]
    return svc


def started(starts: Path) -> list[int]:
    return [int(pid) for pid in starts.read_text().split()] if starts.exists() else []


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def running(plane: LocalPlane, starts: Path, count: int) -> list[int]:
    """Wait until exactly `count` recorded replicas run; their pids."""

    def now() -> tuple[list[int]] | None:
        pids = [pid for pid in started(starts) if alive(pid)]
        return (pids,) if len(pids) == count else None  # a tuple: no replica is an answer too

    def failure() -> str:
        return f"not {count} running: {[(p, alive(p)) for p in started(starts)]}\n{plane.log()[-3000:]}"

    # the replicas are processes of another process: /proc is what can be observed
    return eventually(now, 60, failure)[0]


def stay_stopped(plane: LocalPlane, starts: Path) -> None:
    """The recorded replicas stop, and none starts again while the autoscaler ticks on."""
    running(plane, starts, 0)
    before = started(starts)
    plane.wait_autoscaler_ticks(4)
    assert started(starts) == before, "replicas were started again after the deletion"
    assert not [pid for pid in before if alive(pid)]


def test_deleting_a_service_stops_its_replicas_for_good(
    fast_plane: LocalPlane, tmp_path: Path
) -> None:
    plane = fast_plane
    starts = tmp_path / "starts"
    apply(plane, tmp_path, recorded_service("echo", starts, {SCALE + "min-scale": "2"}))
    plane.wait_ready("services", "echo")
    running(plane, starts, 2)
    assert plane.call(HOST).status_code == 200

    deleted = plane.knserve("service", "delete", "echo")
    assert deleted.returncode == 0, deleted.stderr
    stay_stopped(plane, starts)
    assert plane.call(HOST).status_code == 404
    assert "echo-00001" not in plane.metrics()


def test_deleting_a_revision_without_traffic_stops_its_replicas_and_the_route_says_so(
    fast_plane: LocalPlane, tmp_path: Path
) -> None:
    plane = fast_plane
    old, new = tmp_path / "old", tmp_path / "new"
    apply(plane, tmp_path, recorded_service("echo", old, {SCALE + "min-scale": "2"}))
    plane.wait_ready("services", "echo")
    v2 = recorded_service("echo", new, {})
    v2["spec"]["traffic"] = [
        {"latestRevision": True, "percent": 100},
        {"revisionName": "echo-00001", "percent": 0, "tag": "old"},
    ]
    apply(plane, tmp_path, v2)
    plane.wait_for(
        "services", "echo", lambda o: o["status"].get("latestReadyRevisionName") == "echo-00002"
    )
    running(plane, old, 2)  # tagged at 0 %: kept at its min-scale
    assert plane.call("old-echo.default.localhost").json()["revision"] == "echo-00001"

    # as kubectl delete does it on a cluster: the webhook does not stop it
    plane.client.delete(by_name("revisions"), "default", "echo-00001")
    stay_stopped(plane, old)
    assert plane.call(HOST).json()["revision"] == "echo-00002"
    # The Route still names it (as Knative keeps its traffic): answered at once, as Knative's
    # activator answers a revision it does not have, not held for its 300 s timeoutSeconds.
    gone = plane.call("old-echo.default.localhost", timeout=10)
    assert gone.status_code == 404
    assert gone.text.startswith(
        'Error getting active endpoint: revision.serving.knative.dev "echo-00001" not found: '
        "route default/echo still sends this request (tag 'old') to Revision default/echo-00001"
    ), gone.text
    route = plane.wait_for(
        "routes", "echo", lambda r: _condition(r, "AllTrafficAssigned")["status"] == "False"
    )
    assigned = _condition(route, "AllTrafficAssigned")
    assert assigned["reason"] == "RevisionMissing"
    assert assigned["message"] == 'Revision "echo-00001" referenced in traffic not found.'


def test_deleting_an_inference_service_stops_its_predictor_for_good(
    fast_plane: LocalPlane, tmp_path: Path
) -> None:
    plane = fast_plane
    starts = tmp_path / "starts"
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "custom", "namespace": "default"},
        "spec": {
            "predictor": {
                "minReplicas": 2,
                "containers": [{"name": "kserve-container", **recorded(starts)}],
            }
        },
    }
    apply(plane, tmp_path, isvc)
    plane.wait_ready("inferenceservices", "custom", timeout=120)
    running(plane, starts, 2)
    assert plane.call("custom.default.localhost").status_code == 200

    deleted = plane.knserve("isvc", "delete", "custom")
    assert deleted.returncode == 0, deleted.stderr
    stay_stopped(plane, starts)
    assert plane.call("custom.default.localhost").status_code == 404


def _condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(
        (c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == ctype), {}
    )


@contextlib.contextmanager
def watching(plane: LocalPlane, plural: str) -> Iterator[list[dict[str, Any]]]:
    """Every watch event of a serving.knative.dev kind while the block runs, as the API streams
    them (every status written, not a poller's samples)."""
    events: list[dict[str, Any]] = []
    url = f"{plane.api}/apis/serving.knative.dev/v1/namespaces/default/{plural}?watch=true"
    with httpx.Client(timeout=None) as http, http.stream("GET", url) as stream:

        def read() -> None:
            with contextlib.suppress(httpx.HTTPError):
                for line in stream.iter_lines():
                    if line:
                        events.append(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            yield events
        finally:
            stream.close()
            reader.join(10)


def _ready(status: dict[str, Any]) -> bool:
    return _condition({"status": status}, "Ready").get("status") == "True"


def test_initial_scale_makes_the_revision_ready_only_with_that_many_ready_replicas(
    fast_plane: LocalPlane, tmp_path: Path
) -> None:
    plane = fast_plane
    starts = tmp_path / "starts"
    # the replicas become ready about 0.7 s apart
    svc = recorded_service("echo", starts, {SCALE + "initial-scale": "3"}, stagger=0.7)
    with watching(plane, "revisions") as events:
        apply(plane, tmp_path, svc)
        plane.wait_ready("services", "echo")

        def statuses() -> list[dict[str, Any]] | None:
            seen = [
                e["object"].get("status") or {}
                for e in list(events)
                if e["object"]["metadata"]["name"] == "echo-00001"
            ]
            return seen if any(map(_ready, seen)) else None

        # the API streams the events from another process
        seen = eventually(statuses, 30, lambda: f"no Ready revision among {events}")
    first_ready = next(s for s in seen if _ready(s))
    assert first_ready["actualReplicas"] == 3, seen
    assert any(s.get("actualReplicas") in (1, 2) for s in seen), "the replicas were not staggered"
    assert len(running(plane, starts, 3)) == 3


def test_initial_scale_zero_is_ready_with_no_replica_and_the_first_request_scales_it_up(
    spawn: Any, tmp_path: Path
) -> None:
    plane = LocalPlane(
        spawn,
        tmp_path / "plane",
        [*FAST_AUTOSCALER, "--autoscaler", "allow-zero-initial-scale=true"],
    )
    try:
        starts = tmp_path / "starts"
        apply(plane, tmp_path, recorded_service("echo", starts, {SCALE + "initial-scale": "0"}))
        plane.wait_ready("services", "echo")
        revision = plane.wait_ready("revisions", "echo-00001")
        conditions = {c["type"]: c for c in revision["status"]["conditions"]}
        assert (conditions["Active"]["status"], conditions["Active"]["reason"]) == (
            "False",
            "NoTraffic",
        )
        assert revision["status"]["actualReplicas"] == 0
        plane.wait_autoscaler_ticks(2)
        assert started(starts) == []  # Ready with no replica, and none started

        answer = plane.call(HOST)  # held by the activator while the first replica starts
        assert answer.status_code == 200
        assert answer.json()["revision"] == "echo-00001"
        assert len(started(starts)) == 1
        plane.wait_for(
            "revisions", "echo-00001", lambda r: _condition(r, "Active").get("status") == "True"
        )
    finally:
        plane.close()


def test_a_revision_without_traffic_stays_ready_and_inactive(
    fast_plane: LocalPlane, tmp_path: Path
) -> None:
    plane = fast_plane
    apply(plane, tmp_path, echo_service(greeting="v1"))
    plane.wait_ready("services", "echo")
    apply(plane, tmp_path, echo_service(greeting="v2"))  # the latest takes all the traffic
    plane.wait_for(
        "services", "echo", lambda o: o["status"].get("latestReadyRevisionName") == "echo-00002"
    )

    old = plane.wait_for(
        "revisions", "echo-00001", lambda r: _condition(r, "Active").get("status") == "False"
    )
    conditions = {
        c["type"]: (c["status"], c.get("reason"), c.get("message"))
        for c in old["status"]["conditions"]
    }
    assert conditions == {
        "Ready": ("True", None, None),
        "ResourcesAvailable": ("True", None, None),
        "ContainerHealthy": ("True", None, None),
        "Active": ("False", "NoTraffic", "The target is not receiving traffic."),
    }
    assert old["status"]["actualReplicas"] == 0
    listed = plane.knserve("revision", "list", "-s", "echo").stdout.splitlines()
    row = next(line.split() for line in listed if line.startswith("echo-00001 "))
    assert row[-1] == "True", listed  # kn's READY column


def test_traffic_may_name_a_revision_that_does_not_exist_yet(
    fast_plane: LocalPlane, tmp_path: Path
) -> None:
    plane = fast_plane
    svc = echo_service(metadata={"name": "echo-v1"})
    svc["spec"]["traffic"] = [{"revisionName": "echo-v2", "percent": 100}]
    apply(plane, tmp_path, svc)  # accepted, as Knative's webhook accepts it

    missing = 'Revision "echo-v2" referenced in traffic not found.'
    route = plane.wait_for(
        "routes", "echo", lambda r: _condition(r, "AllTrafficAssigned").get("status") == "False"
    )
    for ctype in ("AllTrafficAssigned", "Ready"):
        assert (_condition(route, ctype)["reason"], _condition(route, ctype)["message"]) == (
            "RevisionMissing",
            missing,
        )
    service = plane.wait_for(
        "services", "echo", lambda s: _condition(s, "RoutesReady").get("status") == "False"
    )
    assert _condition(service, "Ready")["message"] == missing
    assert plane.call(HOST).status_code == 404

    svc["spec"]["template"]["metadata"] = {"name": "echo-v2"}  # the revision appears
    apply(plane, tmp_path, svc)
    plane.wait_ready("services", "echo")
    route = plane.wait_ready("routes", "echo")
    assert {c["type"]: c["status"] for c in route["status"]["conditions"]} == {
        "Ready": "True",
        "AllTrafficAssigned": "True",
        "IngressReady": "True",
        "CertificateProvisioned": "True",
    }
    assert plane.call(HOST).json()["revision"] == "echo-v2"


def test_a_reconcile_that_fails_writes_why_onto_the_object_and_the_rest_go_on(
    spawn: Any, tmp_path: Path
) -> None:
    # A Service stored before admission checked its annotations (window below Knative's 6 s), as
    # an older knserve accepted it: written straight into the plane's store while it is down.
    data = tmp_path / "plane"
    data.mkdir()
    store = Store(data / "state.db")
    stored = echo_service("stale", metadata={"annotations": {SCALE + "window": "5s"}})
    store.create(by_name("services"), stored, validate=False)
    store.close()
    plane = LocalPlane(spawn, data, FAST_AUTOSCALER)
    try:
        apply(plane, tmp_path, echo_service("fine"))
        plane.wait_ready("services", "fine")  # one object that fails stalls no other
        stale = plane.wait_for(
            "services", "stale", lambda s: _condition(s, "Ready").get("status") == "False"
        )
        ready = _condition(stale, "Ready")
        assert ready["reason"] == "InternalError"
        assert "window" in ready["message"] and "5s" in ready["message"], ready
        assert stale["status"]["observedGeneration"] == stale["metadata"]["generation"]
        plane.wait_autoscaler_ticks(2)  # retried meanwhile: one traceback in the log, not one a try
        assert plane.log().count("Traceback") == 1, plane.log()
    finally:
        plane.close()
