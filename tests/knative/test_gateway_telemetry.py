"""The gateway's request ids, trace headers, spans and access log, against real loopback replicas."""

from __future__ import annotations

import asyncio
import logging
import re

import httpx
import pytest
from gateway_fixtures import HOST, raw_upstream, routed_gateway
from otlp_receiver import OtlpReceiver, otlp_receiver

from knserve.knative.activator.gateway import Gateway, RouteSpec, TrafficTarget
from knserve.knative.activator.telemetry import Telemetry
from knserve.runtime.tracing import Tracer, new_tracer

_ = otlp_receiver  # the fixture, for the tests that take it
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


async def echo_head(
    head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Answer with the request head the replica received as the body."""
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(head), head))
    await writer.drain()


def received(body: str) -> dict[str, str]:
    """The forwarded head's headers (lowercase names)."""
    lines = body.split("\r\n")[1:]
    return {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}


async def through_gateway(
    *requests: dict[str, str], **options: object
) -> tuple[list[httpx.Response], str]:
    """GET / once per header set through a gateway (with `options`) to a replica that echoes the
    head it received; the responses and the replica's endpoint."""
    async with (
        raw_upstream(echo_head) as upstream,
        routed_gateway(upstream.endpoint, **options) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as client,
    ):
        responses = [await client.get(h.pop("path", "/"), headers=h) for h in requests]
    return responses, upstream.endpoint


async def test_a_request_without_an_id_gets_one_both_ways_and_a_new_trace() -> None:
    (response, other), _ = await through_gateway({"host": HOST}, {"host": HOST})
    forwarded = received(response.text)
    request_id = response.headers["x-request-id"]
    assert re.fullmatch(UUID4, request_id)
    assert forwarded["x-request-id"] == request_id
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", forwarded["traceparent"])
    assert other.headers["x-request-id"] != request_id
    assert received(other.text)["traceparent"][3:35] != forwarded["traceparent"][3:35]


async def test_the_callers_id_and_trace_go_on_unchanged_with_tracing_off() -> None:
    sent = {
        "host": HOST,
        "x-request-id": "my-request-1",
        "traceparent": f"00-{TRACE}-{SPAN}-01",
        "tracestate": "vendor=x",
    }
    (response,), _ = await through_gateway(sent)
    forwarded = received(response.text)
    assert response.headers["x-request-id"] == "my-request-1"
    assert forwarded["x-request-id"] == "my-request-1"
    assert forwarded["traceparent"] == f"00-{TRACE}-{SPAN}-01"
    assert forwarded["tracestate"] == "vendor=x"
    assert response.text.count("x-request-id") == 1  # replaced, never doubled


async def test_b3_alone_is_passed_on_and_written_as_w3c_too() -> None:
    sent = {"host": HOST, "x-b3-traceid": TRACE, "x-b3-spanid": SPAN, "x-b3-sampled": "1"}
    (response,), _ = await through_gateway(sent)
    forwarded = received(response.text)
    assert (forwarded["x-b3-traceid"], forwarded["x-b3-spanid"]) == (TRACE, SPAN)
    assert forwarded["traceparent"] == f"00-{TRACE}-{SPAN}-01"


async def test_the_gateways_own_errors_carry_the_request_id() -> None:
    (missing, mine), _ = await through_gateway(
        {"host": "nope.default.localhost"}, {"host": "nope", "x-request-id": "abc"}
    )
    assert missing.status_code == 404 and re.fullmatch(UUID4, missing.headers["x-request-id"])
    assert mine.headers["x-request-id"] == "abc"


async def test_the_access_log_has_a_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="knserve.access")
    (response, _), endpoint = await through_gateway(
        {"host": HOST, "x-request-id": "r-1", "path": "/path?q=1"},
        {"host": "nope"},
        telemetry=Telemetry(access_log=True),
    )
    records = [r for r in caplog.records if r.name == "knserve.access"]
    assert len(records) == 2
    ok, missing = records
    assert (ok.method, ok.host, ok.path, ok.status) == ("GET", HOST, "/path?q=1", 200)  # type: ignore[attr-defined]
    assert ok.bytes == len(response.content)  # type: ignore[attr-defined]
    assert (ok.revision, ok.replica, ok.request_id) == ("default/iris-1", endpoint, "r-1")  # type: ignore[attr-defined]
    assert ok.duration_ms > 0  # type: ignore[attr-defined]
    assert f"GET {HOST}/path?q=1 200 {len(response.content)} " in ok.getMessage()
    assert missing.status == 404 and missing.revision == ""  # type: ignore[attr-defined]


async def test_the_access_log_is_off_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="knserve.access")
    await through_gateway({"host": HOST})
    assert not [r for r in caplog.records if r.name == "knserve.access"]


def otlp_tracer(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> Tracer:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # export within 50 ms, not 5 s
    found = new_tracer("knserve-gateway")
    assert found is not None
    return found


async def test_a_span_per_request_parents_the_replicas_view(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans = otlp_tracer(otlp_receiver, monkeypatch)
    telemetry = Telemetry(spans)
    sent = {"host": HOST, "traceparent": f"00-{TRACE}-{SPAN}-01", "x-request-id": "r-2"}
    (response,), _ = await through_gateway(sent, telemetry=telemetry)
    forwarded = received(response.text)["traceparent"]
    got = otlp_receiver.wait_for(lambda found: any(s.name == "route" for s in found))
    (route,) = [s for s in got if s.name == "route"]
    assert (route.trace_id, route.parent_id, route.service) == (TRACE, SPAN, "knserve-gateway")
    assert forwarded == f"00-{TRACE}-{route.span_id}-01"  # the replica's parent is the route span
    assert route.attributes["knative.revision"] == "iris-1"
    assert route.attributes["http.response.status_code"] == 200
    assert route.attributes["knserve.request_id"] == "r-2"
    spans.shutdown()


class LateEndpoints:
    """No replica until `ready` is set: a revision at zero."""

    def __init__(self) -> None:
        self.ready: tuple[str, ...] = ()

    def endpoints(self, namespace: str, revision: str) -> tuple[str, ...]:
        return self.ready


async def test_a_request_to_a_revision_at_zero_has_its_activation_span(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans = otlp_tracer(otlp_receiver, monkeypatch)
    source = LateEndpoints()
    async with raw_upstream(echo_head) as upstream:

        def scale_from_zero(namespace: str, revision: str) -> None:
            # the autoscaler's answer to the activator: a replica becomes ready, a little later
            def ready() -> None:
                source.ready = (upstream.endpoint,)
                gateway.endpoints_changed(namespace, revision)

            asyncio.get_running_loop().call_later(0.2, ready)

        gateway = Gateway(
            source, hold_unready=True, on_demand=scale_from_zero, telemetry=Telemetry(spans)
        )
        gateway.set_revision("default", "iris-1", 0, 30)
        gateway.set_route(RouteSpec("default", "iris", (TrafficTarget("iris-1", 100),)))
        await gateway.start("127.0.0.1", 0)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}") as client:
                response = await client.get("/", headers={"host": HOST})
        finally:
            await gateway.close(grace=1.0)
    assert response.status_code == 200
    names = {"route", "queue wait", "activation"}
    got = otlp_receiver.wait_for(lambda found: names <= {s.name for s in found})
    by_name = {s.name: s for s in got}
    route = by_name["route"]
    assert route.parent_id == ""  # the gateway started the trace
    for child in ("queue wait", "activation"):
        assert (by_name[child].trace_id, by_name[child].parent_id) == (
            route.trace_id,
            route.span_id,
        )
    activation = by_name["activation"]
    assert activation.end_ns - activation.start_ns >= 150_000_000  # the 200 ms the replica took
    spans.shutdown()


async def test_a_trace_the_sampler_leaves_out_is_marked_so_and_never_exported(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    spans = otlp_tracer(otlp_receiver, monkeypatch)
    (response,), _ = await through_gateway({"host": HOST}, telemetry=Telemetry(spans))
    assert received(response.text)["traceparent"].endswith("-00")  # the replica records nothing
    spans.flush()
    assert otlp_receiver.spans == [] and otlp_receiver.requests == 0
    spans.shutdown()
