"""The gateway degrading gracefully: its bounded queue answers 503 at once, a replica answering
500 is ejected and rejoins, and a replica killed mid-load loses only its in-flight requests.

Replicas here are real processes (tests/support/flaky_server.py) or uvicorn servers in the test's
loop (tests/support/replica_fixtures.py); the gateway runs in the test's loop.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from gateway_fixtures import HOST, event_loop_policy, raw_upstream
from net_fixtures import ServerProcess, free_port
from replica_fixtures import serve, wait_until

from knserve.knative.activator.gateway import Gateway, RouteSpec, TrafficTarget
from knserve.knative.apiserver.outlier_annotations import OutlierDetection

__all__ = ["event_loop_policy"]  # a fixture: every test runs on asyncio's loop and on uvloop

FLAKY = str(Path(__file__).parents[1] / "support" / "flaky_server.py")


def start_flaky(spawn: Callable[..., ServerProcess], state: Path, status: int) -> ServerProcess:
    """A flaky_server process on a free port, once it answers `status` (500 for the bad one)."""
    port = free_port()
    process = spawn([sys.executable, FLAKY, str(port), str(state)])
    process.wait_http(f"http://127.0.0.1:{port}/", status=status)
    process.endpoint = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    return process


def route(gateway: Gateway, endpoints, ready: list[str], **revision) -> None:  # type: ignore[no-untyped-def]
    endpoints.ready[("default", "iris-1")] = tuple(ready)
    gateway.set_revision("default", "iris-1", **revision)
    gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))


async def test_a_full_queue_answers_503_at_once_with_retry_after(
    gateway, endpoints, client, start_replica
) -> None:
    replica = await start_replica("a")
    await serve(gateway, endpoints, {"iris-1": [replica]}, concurrency=1)
    held = [asyncio.create_task(client.get(f"/hold{i}")) for i in range(11)]
    # 1 in flight and 10 queued: the queue-proxy's depth of 10 x containerConcurrency
    await wait_until(lambda: gateway.stats("default", "iris-1").in_flight == 11)
    assert gateway.stats("default", "iris-1").queued == 10
    rejected = await client.get("/one-too-many")
    assert rejected.status_code == 503
    assert rejected.headers["retry-after"] == "1"
    assert rejected.text.startswith(
        "pending request queue full: Revision default/iris-1 is overloaded: 10 requests already "
        "wait for 1 ready replica(s) at containerConcurrency=1"
    )
    (state,) = gateway.throttlers()
    assert state.queue_full == 1
    assert state.requests[503].count == 1  # activator_request_count{response_code="503"}
    replica.gate.set()
    assert [r.status_code for r in await asyncio.gather(*held)] == [200] * 11
    assert "/one-too-many" not in [seen.path for seen in replica.seen]


async def test_the_queue_grows_with_the_ready_replicas(
    gateway, endpoints, client, start_replica
) -> None:
    replicas = [await start_replica("a"), await start_replica("b")]
    await serve(gateway, endpoints, {"iris-1": replicas}, concurrency=2)
    held = [asyncio.create_task(client.get(f"/hold{i}")) for i in range(4 + 40)]
    await wait_until(lambda: gateway.stats("default", "iris-1").queued == 40)
    assert (await client.get("/over")).status_code == 503
    for replica in replicas:
        replica.gate.set()
    assert Counter(r.status_code for r in await asyncio.gather(*held)) == {200: 44}


async def test_a_replica_answering_500_is_ejected_then_rejoins_after_its_back_off(
    gateway, endpoints, client, spawn, tmp_path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    bad = start_flaky(spawn, state, 500)
    good = start_flaky(spawn, state, 200)
    config = OutlierDetection(consecutive_5xx_errors=3, base_ejection_time=1.0)
    route(gateway, endpoints, [bad.endpoint, good.endpoint], container_concurrency=0,
          timeout_seconds=30, outlier_detection=config)  # fmt: skip
    statuses = []
    while statuses.count(500) < 3:
        statuses.append((await client.get("/")).status_code)
        assert len(statuses) < 10, statuses
    ejected_at = gateway.loop.time()
    (revision,) = gateway.throttlers()
    assert revision.outliers.is_ejected(bad.endpoint)
    answers = [await client.get("/") for _ in range(10)]
    assert {(r.status_code, r.json()["pid"]) for r in answers} == {(200, good.pid)}
    # back after baseEjectionTime, still failing: a second run of three 500s ejects it for 2 x 1 s
    await wait_until(lambda: not revision.outliers.is_ejected(bad.endpoint), timeout=5)
    assert gateway.loop.time() - ejected_at >= 1.0 - 0.02
    statuses = []
    while statuses.count(500) < 3:
        statuses.append((await client.get("/")).status_code)
        assert len(statuses) < 10, statuses
    host = revision.outliers.hosts[bad.endpoint]
    assert host.ejections == 2 and host.ejected_until is not None
    assert host.ejected_until - gateway.loop.time() == pytest.approx(2.0, abs=0.1)
    (state / "healed").touch()
    await wait_until(lambda: not revision.outliers.is_ejected(bad.endpoint), timeout=5)
    pids = {(await client.get("/")).json()["pid"] for _ in range(6)}
    assert pids == {bad.pid, good.pid}  # healed and back in rotation


async def test_when_every_replica_is_ejected_requests_get_503_with_when_to_retry(
    gateway, endpoints, client, spawn, tmp_path
) -> None:
    bad = start_flaky(spawn, tmp_path, 500)
    config = OutlierDetection(consecutive_5xx_errors=2, base_ejection_time=3.0)
    route(gateway, endpoints, [bad.endpoint], container_concurrency=0, timeout_seconds=30,
          outlier_detection=config)  # fmt: skip
    assert [(await client.get("/")).status_code for _ in range(2)] == [500, 500]
    response = await client.get("/")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert response.text.startswith(
        "no healthy upstream: every ready replica of Revision default/iris-1 is ejected by "
        "outlier detection after consecutive errors; the first rejoins in 3s"
    )
    assert gateway.throttlers()[0].all_ejected == 1


async def test_a_replica_killed_mid_load_loses_only_its_in_flight_requests(
    gateway, endpoints, spawn, tmp_path
) -> None:
    (tmp_path / "healed").touch()  # both replicas answer 200
    first = start_flaky(spawn, tmp_path, 200)
    second = start_flaky(spawn, tmp_path, 200)
    route(gateway, endpoints, [first.endpoint, second.endpoint], container_concurrency=2,
          timeout_seconds=30)  # fmt: skip
    (revision,) = gateway.throttlers()
    results: list[tuple[int, str]] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.port}", headers={"Host": HOST}, timeout=30.0
    ) as client:

        async def load() -> None:
            while not stop.is_set():
                # a model's request: a POST with a body, never sent twice
                response = await client.post("/sleep?s=0.1", content=b'{"instances": [[1, 2]]}')
                results.append((response.status_code, response.text))

        loops = [asyncio.create_task(load()) for _ in range(8)]
        await wait_until(lambda: len(results) >= 20, timeout=20)
        in_flight = revision.replicas[second.endpoint].in_flight
        os.kill(second.pid, signal.SIGKILL)  # the endpoint stays listed: the supervisor is slow
        killed_at = len(results)
        await wait_until(lambda: len(results) >= killed_at + 40, timeout=20)
        stop.set()
        await asyncio.gather(*loops)
    failed = [(code, text) for code, text in results if code != 200]
    assert 1 <= in_flight <= 2
    assert len(failed) <= in_flight, failed
    for code, text in failed:
        assert code == 502 and f"replica {second.endpoint} closed the connection" in text
    # the rest were answered, and since the kill only by the replica left
    assert len(results) - len(failed) == Counter(code for code, _ in results)[200]
    assert all(f'"pid": {first.pid}' in text for _, text in results[-20:])


async def test_a_request_that_could_not_be_sent_goes_to_another_replica_at_most_three(
    gateway, endpoints, client, start_replica
) -> None:
    good = await start_replica("a")
    refusing = f"127.0.0.1:{free_port()}"
    route(
        gateway, endpoints, [refusing, good.endpoint], container_concurrency=0, timeout_seconds=30
    )
    answers = [await client.get(f"/{i}") for i in range(4)]
    assert [r.status_code for r in answers] == [200] * 4
    assert [seen.path for seen in good.seen] == ["/0", "/1", "/2", "/3"]  # each sent once
    gone = [f"127.0.0.1:{free_port()}" for _ in range(4)]
    route(gateway, endpoints, gone, container_concurrency=0, timeout_seconds=30)
    response = await client.get("/")
    assert response.status_code == 502
    assert response.text.startswith(
        "Revision default/iris-1: 3 replicas could not be reached, the last 127.0.0.1:"
    )


async def test_a_pooled_connection_the_replica_closed_is_not_used(gateway, endpoints) -> None:
    async def answer_then_close(
        head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        await reader.readexactly(length)
        # keep-alive by its headers, yet closed at once: the close comes with the answer
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        writer.close()

    async with raw_upstream(answer_then_close) as upstream:
        route(gateway, endpoints, [upstream.endpoint], container_concurrency=0, timeout_seconds=30)
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        post = f"POST /predict HTTP/1.1\r\nHost: {HOST}\r\ncontent-length: 2\r\n\r\n{{}}".encode()
        # pipelined: the second goes out the moment the first is answered, before the gateway
        # has seen the replica's close (asyncio: it is dropped unused) or before the replica
        # closes (uvloop: the replica resets it unread, so it is sent again)
        writer.write(post + post)
        raw = b""
        while raw.count(b"HTTP/1.1 ") < 2 or not raw.endswith(b"ok"):
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, raw
            raw += chunk
        writer.close()
    assert raw.count(b"HTTP/1.1 200 OK\r\n") == 2, raw
    assert upstream.connections == 2
