"""The gateway carries HTTP/2 cleartext (h2c) to a real gRPC runtime: Triton's and KServe's gRPC
clients through it, routed by `:authority` as HTTP/1.1 is by Host, held while no replica is ready,
counted against containerConcurrency, and the gateway's own errors as gRPC status codes.

Each gRPC client runs in its own process (tests/support/grpc_client_driver.py), so the gateway's
loop keeps serving while the test waits for it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from gateway_fixtures import event_loop_policy
from model_fixtures import train_sklearn_iris
from net_fixtures import ServerProcess, free_port
from replica_fixtures import Endpoints, wait_until

from knserve.knative.activator.gateway import Gateway, RouteSpec, TrafficTarget

__all__ = ["event_loop_policy"]  # a fixture: every test runs on asyncio's loop and on uvloop

pytest.importorskip("grpc")
DRIVER = Path(__file__).parents[1] / "support" / "grpc_client_driver.py"
HOST = "iris.default.localhost"


def _rows() -> np.ndarray:
    from sklearn.datasets import load_iris

    x, _ = load_iris(return_X_y=True)
    return x[::50].astype(np.float32)


async def drive(kind: str, address: str, authority: str, rows: np.ndarray) -> Any:
    """Run a real gRPC client in its own process; the gateway's loop serves meanwhile."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DRIVER),
        kind,
        address,
        "iris",
        authority,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(json.dumps(rows.tolist()).encode()), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    return json.loads(out)


@pytest.fixture(scope="module")
def grpc_runtime(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A knserve runtime serving iris over gRPC (and REST), for every test of the module."""
    repo = tmp_path_factory.mktemp("repo")
    model, _ = train_sklearn_iris(repo / "iris")
    http_port, grpc_port = free_port(), free_port()
    args = ["--model-repository", str(repo), "--http-port", str(http_port)]
    server = ServerProcess(
        [sys.executable, "-m", "knserve.runtime", *args, "--grpc-port", str(grpc_port)],
        repo.parent / "runtime.log",
    )
    try:
        server.wait_http(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=60)
        yield f"127.0.0.1:{grpc_port}", model
    finally:
        server.stop()


@pytest.mark.slow
async def test_triton_and_kserve_grpc_clients_through_the_gateway_split_by_percent(
    grpc_runtime,
) -> None:  # type: ignore[no-untyped-def]
    endpoint, model = grpc_runtime
    endpoints = Endpoints()
    endpoints.ready[("default", "iris-1")] = endpoints.ready[("default", "iris-2")] = (endpoint,)
    gateway = Gateway(endpoints)
    await gateway.start("127.0.0.1", 0)
    try:
        split = (TrafficTarget("iris-1", 50), TrafficTarget("iris-2", 50))
        gateway.set_route(RouteSpec("default", "iris", split))
        rows = _rows()
        address = f"127.0.0.1:{gateway.port}"
        triton = await drive("triton", address, HOST, rows)
        kserve = await drive("kserve", address, HOST, rows)
        # HTTP/1.1 goes on working on the same port
        async with httpx.AsyncClient() as client:
            missing = await client.get(f"http://{address}/", headers={"Host": "nope.localhost"})
    finally:
        await gateway.close()
    expected = model.predict(rows).tolist()
    assert triton["live"] and triton["ready"] and triton["model_ready"]
    assert triton["outputs"] == {"output-0": expected}
    assert triton["raw"] is True  # raw_output_contents came back through the gateway
    assert triton["errors"]["unknown_model"][0] == "StatusCode.NOT_FOUND"  # the runtime's trailers
    assert triton["errors"]["bad_width"][0] == "StatusCode.INVALID_ARGUMENT"
    assert kserve["outputs"] == {"output-0": expected} and kserve["id"] == "req-2"
    assert kserve["errors"]["unknown_model"][0] == "NOT_FOUND"
    assert kserve["errors"]["bad_shape"][0] == "INVALID_ARGUMENT"
    assert missing.status_code == 404
    # every RPC is one request: Triton's 6 health/metadata/index calls and 3 infers, KServe's 3 + 3,
    # split 50/50 (the split alternates, so 8 and 7)
    counts = sorted(gateway.stats("default", r).requests_total for r in ("iris-1", "iris-2"))
    assert counts == [7, 8]
    assert gateway.stats("default", "iris-1").in_flight == 0


@pytest.mark.slow
async def test_a_grpc_call_waits_for_a_replica_and_unknown_hosts_get_grpc_codes(
    grpc_runtime,
) -> None:  # type: ignore[no-untyped-def]
    import grpc

    endpoint, model = grpc_runtime
    endpoints = Endpoints()
    gateway = Gateway(endpoints, hold_unready=True)
    await gateway.start("127.0.0.1", 0)
    try:
        gateway.set_route(
            RouteSpec(
                "default",
                "iris",
                (TrafficTarget("iris-1", 100), TrafficTarget("iris-2", 0, tag="canary")),
            )
        )
        gateway.set_revision("default", "iris-2", 1, 300)  # containerConcurrency 1
        address = f"127.0.0.1:{gateway.port}"
        rows = _rows()
        # a revision with no replica yet (scaled to zero): the stream is held, as a request is
        held = asyncio.create_task(drive("kserve", address, HOST, rows))
        await wait_until(lambda: gateway.stats("default", "iris-1").queued >= 1, timeout=60)
        endpoints.ready[("default", "iris-1")] = (endpoint,)
        gateway.endpoints_changed("default", "iris-1")
        assert (await held)["outputs"] == {"output-0": model.predict(rows).tolist()}
        # the tag host reaches the tagged revision only
        endpoints.ready[("default", "iris-2")] = (endpoint,)
        tagged = await drive("triton", address, "canary-iris.default.localhost", rows)
        assert tagged["outputs"] == {"output-0": model.predict(rows).tolist()}
        assert gateway.stats("default", "iris-2").requests_total == 9
        async with grpc.aio.insecure_channel(
            address, options=[("grpc.default_authority", "nope.default.localhost")]
        ) as channel:
            call = channel.unary_unary("/inference.GRPCInferenceService/ServerLive")
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call(b"")
        # plain HTTP/2 (curl --http2-prior-knowledge) gets the HTTP status and the message
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            plain = await client.get(f"http://{address}/", headers={"Host": "nope.localhost"})
    finally:
        await gateway.close()
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "No route serves host 'nope.default.localhost'" in (raised.value.details() or "")
    assert plain.http_version == "HTTP/2" and plain.status_code == 404
    assert "No route serves host 'nope.localhost'" in plain.text


async def _http2_twice(endpoint: str) -> tuple[Gateway, list[httpx.Response]]:
    """Two HTTP/2 requests through a gateway whose one route goes to the replica at `endpoint`."""
    endpoints = Endpoints()
    endpoints.ready[("default", "iris-1")] = (endpoint,)
    gateway = Gateway(endpoints)
    await gateway.start("127.0.0.1", 0)
    try:
        gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            url = f"http://127.0.0.1:{gateway.port}/"
            answers = [await client.get(url, headers={"Host": HOST}) for _ in range(2)]
    finally:
        await gateway.close()
    return gateway, answers


async def test_http2_to_a_replica_that_speaks_only_http1_is_a_clear_502(start_replica) -> None:  # type: ignore[no-untyped-def]
    replica = await start_replica("http1")
    gateway, (answer, again) = await _http2_twice(replica.endpoint)  # again: the gateway stays up
    assert answer.status_code == again.status_code == 502
    assert "closed it without a word of HTTP/2" in answer.text
    assert "revisions whose container port is named h2c" in answer.text
    assert gateway.stats("default", "iris-1").in_flight == 0


class _ConnectionFieldsReplica(asyncio.Protocol):
    """An h2c server (h2's own state machine) that answers with HTTP/1.1's connection fields,
    which HTTP/2 forbids (a client that checks them would drop the whole connection), and every
    other time with no :status."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        from h2.config import H2Configuration
        from h2.connection import H2Connection

        self.transport: Any = transport
        config = H2Configuration(
            client_side=False, validate_outbound_headers=False, normalize_outbound_headers=False
        )
        self.conn = H2Connection(config)
        self.conn.initiate_connection()
        self.transport.write(self.conn.data_to_send())

    def data_received(self, data: bytes) -> None:
        from h2.events import StreamEnded

        for event in self.conn.receive_data(data):
            if isinstance(event, StreamEnded):
                # every other answer has no :status at all
                status = [(b":status", b"200")] if event.stream_id % 4 == 1 else []
                headers = [*status, (b"connection", b"keep-alive"), (b"keep-alive", b"timeout=5")]
                headers.append((b"content-type", b"text/plain"))
                self.conn.send_headers(event.stream_id, headers)
                self.conn.send_data(event.stream_id, b"ok", end_stream=True)
        self.transport.write(self.conn.data_to_send())


async def test_a_replicas_connection_fields_are_dropped_and_a_missing_status_is_a_502() -> None:
    server = await asyncio.get_running_loop().create_server(
        _ConnectionFieldsReplica, "127.0.0.1", 0
    )
    try:
        _, answers = await _http2_twice(f"127.0.0.1:{server.sockets[0].getsockname()[1]}")
    finally:
        server.close()
    answer, headless = answers
    assert answer.http_version == "HTTP/2" and answer.status_code == 200, answer.text
    assert answer.text == "ok"
    assert "connection" not in answer.headers and "keep-alive" not in answer.headers
    assert headless.status_code == 502
    assert "answered without a valid :status (b'')" in headless.text
