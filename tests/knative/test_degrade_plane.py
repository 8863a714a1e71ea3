"""Degrading gracefully on the local plane, end to end: a revision's replica answering 500 is
ejected and rejoins after its back-off; overload is answered 503 at once, with the plane's memory
flat and no request waiting past its timeout."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from net_fixtures import eventually
from plane_fixtures import LocalPlane, apply

pytestmark = pytest.mark.slow

FLAKY = str(Path(__file__).parents[1] / "support" / "flaky_server.py")
SCALE = "autoscaling.knative.dev/"
OUTLIER = "knserve.dev/outlier-"


def flaky_service(
    name: str, state: Path, annotations: dict[str, str], **spec: Any
) -> dict[str, Any]:
    """A Service whose first replica answers 500 until `state/healed` exists (flaky_server.py)."""
    container = {
        "image": "python",
        "command": [sys.executable, FLAKY],
        "args": ["$(PORT)", str(state)],
    }
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "metadata": {"annotations": annotations},
                "spec": {"containers": [container], **spec},
            }
        },
    }


def gateway_samples(plane: LocalPlane, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric family of the plane, keyed by their sorted labels."""
    from prometheus_client.parser import text_string_to_metric_families

    text = plane.client.http.get("/metrics").text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


class Result(NamedTuple):
    status: int
    latency: float  # seconds, as the client saw it
    retry_after: str
    body: str


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def test_a_replica_answering_500_is_ejected_and_rejoins_after_its_back_off(
    plane: LocalPlane, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    annotations = {
        SCALE + "min-scale": "2",
        SCALE + "max-scale": "2",
        OUTLIER + "consecutive-5xx-errors": "3",
        OUTLIER + "base-ejection-time": "2s",
    }
    apply(plane, tmp_path, flaky_service("flaky", state, annotations))
    plane.wait_ready("services", "flaky")
    host = "flaky.default.localhost"
    # both replicas up: the bad one has claimed its file and the gateway sees two endpoints
    eventually(
        lambda: (
            (state / "bad").exists()
            and plane.metrics().get("flaky-00001", {}).get("actual_pods") == 2
        ),
        60,
        lambda: f"two replicas never ran: {plane.metrics()}\n{plane.log()[-3000:]}",
        interval=0.1,
    )
    bad_pid = int((state / "bad").read_text())

    statuses = []
    for _ in range(12):  # the bad one gets every other request until its third 500
        response = plane.call(host)
        statuses.append(response.status_code)
        if statuses.count(500) == 3:
            break
    ejected_at = time.monotonic()
    assert statuses.count(500) == 3, statuses
    answers = [plane.call(host) for _ in range(20)]
    assert [r.status_code for r in answers] == [200] * 20, [r.text for r in answers]
    assert {r.json()["pid"] for r in answers} != {bad_pid}
    assert all(not r.json()["bad"] for r in answers)
    ejections = gateway_samples(plane, "knserve_revision_outlier_ejections_total")
    assert ejections[(("namespace", "default"), ("revision", "flaky-00001"))] == 1

    (state / "healed").touch()  # it recovers; it gets traffic again once its back-off is over
    while True:
        response = plane.call(host)
        assert response.status_code == 200, response.text
        if response.json()["pid"] == bad_pid:
            back = time.monotonic() - ejected_at
            break
        assert time.monotonic() - ejected_at < 10, "the ejected replica never came back"
    assert 1.9 <= back < 6.0, back  # baseEjectionTime 2s x first ejection
    assert (
        gateway_samples(plane, "knserve_revision_outlier_ejected")[
            (("namespace", "default"), ("revision", "flaky-00001"))
        ]
        == 0
    )


async def _overload(port: int, host: str, clients: int, seconds: float) -> list[Result]:
    """`clients` keep-alive connections sending requests back to back for `seconds`, each waiting
    what a 503's Retry-After asks before the next, as a well-behaved client does. Raw HTTP/1.1 on
    asyncio streams: an HTTP library's pool would cost more CPU than the gateway under test."""
    results: list[Result] = []
    request = f"GET /sleep?s=0.5 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    end = time.monotonic() + seconds

    async def loop() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < end:
                started = time.monotonic()
                writer.write(request)
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                length = int(head.split("content-length: ", 1)[1].split("\r\n", 1)[0])
                body = (await reader.readexactly(length)).decode()
                status = int(head.split(" ", 2)[1])
                retry_after = (
                    head.split("retry-after: ", 1)[1].split("\r\n", 1)[0]
                    if "retry-after: " in head
                    else ""
                )
                results.append(Result(status, time.monotonic() - started, retry_after, body))
                if retry_after:
                    await asyncio.sleep(float(retry_after))
        finally:
            writer.close()

    await asyncio.gather(*(loop() for _ in range(clients)))
    return results


def test_overload_is_answered_503_at_once_and_the_planes_memory_stays_flat(
    plane: LocalPlane, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "healed").touch()  # no failing replica here: a slow one
    annotations = {SCALE + "min-scale": "1", SCALE + "max-scale": "1"}
    service = flaky_service("slow", state, annotations, containerConcurrency=1, timeoutSeconds=8)
    apply(plane, tmp_path, service)
    plane.wait_ready("services", "slow")
    host = "slow.default.localhost"
    assert plane.call(host, "/sleep?s=0").status_code == 200
    before = rss_kib(plane.process.pid)

    # capacity: 1 in flight + a queue of 10 (the queue-proxy's 10 x containerConcurrency); 10x it
    results = asyncio.run(_overload(plane.port, host, clients=110, seconds=10.0))

    after = rss_kib(plane.process.pid)
    assert plane.process.proc.poll() is None, plane.log()[-3000:]
    # a queued request waits at most 10 x 0.5 s, within timeoutSeconds: none times out (with an
    # unbounded queue the 110 clients would wait 55 s and get 504 at 8 s)
    assert [r for r in results if r.status not in (200, 503)] == []
    rejected = [r for r in results if r.status == 503]
    served = [r for r in results if r.status == 200]
    assert len(served) >= 5 and len(rejected) > 100, (len(served), len(rejected))
    assert all(r.retry_after == "1" for r in rejected)
    assert all(
        r.body.startswith("pending request queue full: Revision default/slow-00001")
        for r in rejected
    )
    latencies = sorted(r.latency for r in rejected)
    assert latencies[len(latencies) // 2] < 0.1, latencies[len(latencies) // 2]  # median
    assert latencies[-1] < 2.0, latencies[-1]  # far below a queued request's wait
    assert max(r.latency for r in results) < 8.0
    # KiB: about 1000 rejected requests leave no trace (measured: under 1 MiB of growth)
    assert after - before < 8 * 1024, (before, after)
    counted = gateway_samples(plane, "knserve_revision_requests_rejected_total")
    key = (("namespace", "default"), ("reason", "queue_full"), ("revision", "slow-00001"))
    assert counted[key] == len(rejected)
    codes = gateway_samples(plane, "activator_request_count")
    assert sum(v for k, v in codes.items() if ("response_code", "503") in k) == len(rejected)
    assert plane.call(host, "/sleep?s=0").status_code == 200  # the plane is up and serving
