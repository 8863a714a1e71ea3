"""The broker ingress over HTTP: binary, structured and batched CloudEvents; every refusal."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager

from knserve.eventing.eventlog import EventLog, StoredEvent
from knserve.eventing.ingress import BATCH, MAX_BODY_BYTES, STRUCTURED, Ingress, Rejected, decode
from knserve.eventing.ingress_server import IngressServer

NOW = datetime(2025, 3, 1, 12, 30, 15, 250000, tzinfo=UTC).timestamp()
ARRIVED = "2025-03-01T12:30:15.250000Z"
URL = "http://broker/default/orders"
BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "42",
    "ce-source": "/shop",
    "ce-type": "order.created",
    "content-type": "application/json",
}
ENVELOPE = {"specversion": "1.0", "id": "42", "source": "/shop", "type": "order.created"}


class Harness:
    def __init__(self, path: Path) -> None:
        self.log = EventLog(path, clock=lambda: NOW)
        self.log.add_trigger("t", "default", "orders")
        self.woken: list[tuple[str, str]] = []
        self.ingress = Ingress(
            self.log,
            lambda ns, name: (ns, name) in {("default", "orders"), ("prod", "orders")},
            on_accepted=lambda ns, name: self.woken.append((ns, name)),
            clock=lambda: NOW,
        )
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.ingress))

    def stored(self) -> list[StoredEvent]:
        return self.log.pending("t", limit=1000)


class _Loopback(httpx.AsyncHTTPTransport):
    """Every request to the ingress's own HTTP server on loopback, whatever the URL's host."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.port = port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host="127.0.0.1", port=self.port)
        return await super().handle_async_request(request)


@pytest.fixture(params=["asgi", "server"])
async def h(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    """Each test twice: through the ASGI app, and through the plane's HTTP server for it."""
    harness = Harness(tmp_path / "events.db")
    server = None
    if request.param == "server":
        server = IngressServer(harness.ingress, "127.0.0.1", 0)
        await server.start()
        harness.client = httpx.AsyncClient(transport=_Loopback(server.port))
    yield harness
    await harness.client.aclose()
    if server is not None:
        await server.stop()
    harness.log.close()


def error(response: httpx.Response) -> str:
    return str(response.json()["error"])


# ---- accepted ----------------------------------------------------------------------------------


async def test_a_binary_event_is_stored_and_answered_202(h: Harness) -> None:
    headers = {**BINARY, "ce-region": "eu-west", "ce-subject": "caf%C3%A9%20au%20lait"}
    response = await h.client.post(URL, headers=headers, content=b'{"total": 3}')
    assert (response.status_code, response.content) == (202, b"")
    [event] = h.stored()
    assert event.data == b'{"total": 3}'
    assert event.attributes == {
        "specversion": "1.0",
        "id": "42",
        "source": "/shop",
        "type": "order.created",
        "datacontenttype": "application/json",
        "region": "eu-west",
        "subject": "café au lait",  # percent-decoded, as the HTTP binding encodes it
        "knativebrokerttl": "255",
        "knativearrivaltime": ARRIVED,
    }
    assert h.woken == [("default", "orders")]


async def test_a_binary_event_keeps_non_utf8_bytes_and_an_empty_body_is_no_data(h: Harness) -> None:
    headers = {**BINARY, "content-type": "application/octet-stream"}
    await h.client.post(URL, headers=headers, content=b"\xff\x00\xfe")
    await h.client.post(URL, headers={**BINARY, "ce-id": "43"}, content=b"")
    assert [e.data for e in h.stored()] == [b"\xff\x00\xfe", None]


async def test_a_structured_event_with_json_data(h: Harness) -> None:
    body = {
        **ENVELOPE,
        "data": {"total": 3},
        "count": 7,
        "urgent": True,
        "time": "2025-03-01T12:00:00.123456789+01:00",
    }
    response = await h.client.post(
        URL, headers={"content-type": STRUCTURED}, content=orjson.dumps(body)
    )
    assert response.status_code == 202
    [event] = h.stored()
    assert orjson.loads(event.data or b"") == {"total": 3}
    assert event.attributes["datacontenttype"] == "application/json"  # implied by the format
    assert (event.attributes["count"], event.attributes["urgent"]) == ("7", "true")
    assert event.attributes["knativearrivaltime"] == ARRIVED


async def test_a_structured_event_with_base64_or_text_data(h: Harness) -> None:
    binary = {**ENVELOPE, "data_base64": base64.b64encode(b"\x00\x01").decode()}
    text = {**ENVELOPE, "id": "43", "datacontenttype": "text/plain", "data": "hello"}
    for body in (binary, text):
        response = await h.client.post(
            URL, headers={"content-type": STRUCTURED}, content=orjson.dumps(body)
        )
        assert response.status_code == 202
    assert [e.data for e in h.stored()] == [b"\x00\x01", b"hello"]


async def test_a_batch_stores_every_event_in_one_go(h: Harness) -> None:
    batch = [{**ENVELOPE, "id": str(i), "data": i} for i in range(3)]
    response = await h.client.post(
        URL, headers={"content-type": BATCH}, content=orjson.dumps(batch)
    )
    assert response.status_code == 202
    assert [(e.attributes["id"], e.data) for e in h.stored()] == [
        ("0", b"0"),
        ("1", b"1"),
        ("2", b"2"),
    ]
    assert h.woken == [("default", "orders")]


async def test_an_empty_batch_is_accepted_and_wakes_nobody(h: Harness) -> None:
    response = await h.client.post(URL, headers={"content-type": BATCH}, content=b"[]")
    assert response.status_code == 202
    assert (h.stored(), h.woken) == ([], [])


async def test_a_duplicate_is_answered_202_but_stored_once(h: Harness) -> None:
    for _ in range(2):
        response = await h.client.post(URL, headers=BINARY, content=b"{}")
        assert response.status_code == 202
    structured = orjson.dumps({**ENVELOPE, "data": {}})
    assert (
        await h.client.post(URL, headers={"content-type": STRUCTURED}, content=structured)
    ).status_code == 202
    assert len(h.stored()) == 1
    assert h.woken == [("default", "orders")]  # nothing new, nothing to wake for


async def test_the_same_id_on_another_broker_is_another_event(h: Harness) -> None:
    h.log.add_trigger("p", "prod", "orders")
    await h.client.post(URL, headers=BINARY, content=b"{}")
    await h.client.post("http://broker/prod/orders", headers=BINARY, content=b"{}")
    assert len(h.stored()) == 1 and len(h.log.pending("p")) == 1


async def test_a_senders_arrival_time_is_replaced(h: Harness) -> None:
    await h.client.post(URL, headers={**BINARY, "ce-knativearrivaltime": "1999-01-01T00:00:00Z"})
    assert h.stored()[0].attributes["knativearrivaltime"] == ARRIVED


async def test_a_failing_wake_up_does_not_fail_the_accepted_event(h: Harness) -> None:
    def boom(namespace: str, broker: str) -> None:
        raise RuntimeError("dispatcher gone")

    h.ingress.on_accepted = boom
    assert (await h.client.post(URL, headers=BINARY)).status_code == 202
    assert len(h.stored()) == 1


async def test_the_app_answers_lifespan_so_it_can_run_alone(h: Harness) -> None:
    async with LifespanManager(h.ingress):
        pass


# ---- knativebrokerttl ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        pytest.param(None, "255", id="absent-set-to-255"),
        pytest.param("10", "9", id="present-decremented"),
        pytest.param("2", "1", id="last-hop"),
    ],
)
async def test_ttl_is_set_or_decremented(h: Harness, sent: str | None, stored: str) -> None:
    headers = dict(BINARY) if sent is None else {**BINARY, "ce-knativebrokerttl": sent}
    assert (await h.client.post(URL, headers=headers)).status_code == 202
    assert h.stored()[0].attributes["knativebrokerttl"] == stored


@pytest.mark.parametrize("ttl", ["1", "0", "-3"])
async def test_a_spent_ttl_is_refused_with_400(h: Harness, ttl: str) -> None:
    response = await h.client.post(URL, headers={**BINARY, "ce-knativebrokerttl": ttl})
    assert response.status_code == 400
    assert f'attribute "knativebrokerttl" arrived as {ttl} and is spent' in error(response)
    assert h.stored() == []


async def test_a_ttl_that_is_not_an_integer_is_refused(h: Harness) -> None:
    body = orjson.dumps({**ENVELOPE, "knativebrokerttl": "lots"})
    response = await h.client.post(URL, headers={"content-type": STRUCTURED}, content=body)
    assert response.status_code == 400
    assert error(response) == 'attribute "knativebrokerttl" is "lots", not an integer; leave it out'


async def test_a_structured_integer_ttl_counts(h: Harness) -> None:
    body = orjson.dumps({**ENVELOPE, "knativebrokerttl": 5})
    await h.client.post(URL, headers={"content-type": STRUCTURED}, content=body)
    assert h.stored()[0].attributes["knativebrokerttl"] == "4"


# ---- 400 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("attribute", ["specversion", "id", "source", "type"])
async def test_a_binary_event_missing_a_required_attribute_is_400_naming_it(
    h: Harness, attribute: str
) -> None:
    headers = {k: v for k, v in BINARY.items() if k != f"ce-{attribute}"}
    if attribute == "specversion":  # without it, the request is not binary mode at all
        headers.pop("ce-id")
    response = await h.client.post(URL, headers=headers, content=b"{}")
    assert response.status_code == 400
    assert f'missing required attribute "{attribute}"' in error(response)
    assert h.stored() == []


@pytest.mark.parametrize("attribute", ["specversion", "id", "source", "type"])
async def test_a_structured_event_missing_a_required_attribute_is_400_naming_it(
    h: Harness, attribute: str
) -> None:
    body = orjson.dumps({k: v for k, v in ENVELOPE.items() if k != attribute})
    response = await h.client.post(URL, headers={"content-type": STRUCTURED}, content=body)
    assert response.status_code == 400
    assert error(response) == f'missing required attribute "{attribute}" (member "{attribute}")'


async def test_every_missing_attribute_is_named_at_once(h: Harness) -> None:
    response = await h.client.post(URL, headers={"ce-specversion": "1.0"})
    assert error(response) == (
        'missing required attributes "id", "source", "type" (header ce-id, header ce-source, header ce-type)'
    )


async def test_a_plain_post_is_told_how_to_send_a_cloudevent(h: Harness) -> None:
    response = await h.client.post(URL, json={"total": 3})
    assert response.status_code == 400
    assert error(response).startswith('missing required attribute "specversion": send a CloudEvent')


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        pytest.param(
            {"specversion": "0.3"},
            'specversion "0.3" is not supported; send CloudEvents 1.0',
            id="specversion-0.3",
        ),
        pytest.param(
            {"specversion": 1.0},
            'attribute "specversion" must be a string, got 1.0',
            id="specversion-number",
        ),
        pytest.param({"id": 42}, 'attribute "id" must be a string, got 42', id="id-number"),
        pytest.param({"id": "  "}, 'attribute "id" is empty', id="id-blank"),
        pytest.param({"source": ""}, 'attribute "source" is empty', id="source-empty"),
        pytest.param(
            {"type": ["a"]}, 'attribute "type" must be a string, got ["a"]', id="type-list"
        ),
        pytest.param(
            {"time": "yesterday"},
            'attribute "time" is "yesterday", not an RFC 3339 timestamp',
            id="time-words",
        ),
        pytest.param(
            {"time": "2025-02-30T00:00:00Z"}, "not an RFC 3339 timestamp", id="time-no-such-day"
        ),
        pytest.param(
            {"time": "2025-03-01T00:00:00"}, "not an RFC 3339 timestamp", id="time-no-zone"
        ),
        pytest.param(
            {"Region": "eu"}, '"Region" is not a valid attribute name', id="uppercase-name"
        ),
        pytest.param(
            {"my_ext": "x"}, '"my_ext" is not a valid attribute name', id="underscore-name"
        ),
        pytest.param(
            {"ext": {"a": 1}},
            'attribute "ext" must be a string, an integer or a boolean',
            id="object-extension",
        ),
        pytest.param(
            {"ext": 1.5},
            'attribute "ext" must be a string, an integer or a boolean',
            id="float-extension",
        ),
        pytest.param(
            {"data": 1, "data_base64": "AA=="}, "give data or data_base64, not both", id="both-data"
        ),
        pytest.param(
            {"data_base64": "not base64!"}, "data_base64 is not valid base64", id="bad-base64"
        ),
    ],
)
async def test_a_malformed_structured_event_is_400_saying_what_is_wrong(
    h: Harness, envelope: dict[str, Any], message: str
) -> None:
    body = orjson.dumps({**ENVELOPE, **envelope})
    response = await h.client.post(URL, headers={"content-type": STRUCTURED}, content=body)
    assert response.status_code == 400
    assert message in error(response)
    assert h.stored() == []


async def test_a_malformed_binary_header_is_400(h: Harness) -> None:
    response = await h.client.post(URL, headers={**BINARY, "ce-subject": "%FF%FE"})
    assert response.status_code == 400
    assert error(response) == 'header "ce-subject" is not percent-encoded UTF-8'
    response = await h.client.post(URL, headers={**BINARY, "ce-time": "noon"})
    assert 'attribute "time" is "noon"' in error(response)


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        pytest.param(
            STRUCTURED, b"{not json", "the event is not valid JSON", id="structured-not-json"
        ),
        pytest.param(
            STRUCTURED,
            b"[1]",
            "a structured CloudEvent must be a JSON object",
            id="structured-array",
        ),
        pytest.param(BATCH, b'{"id": 1}', "must be a JSON array of events", id="batch-object"),
        pytest.param(BATCH, b"[", "the batch is not valid JSON", id="batch-not-json"),
    ],
)
async def test_a_body_that_is_not_the_json_it_claims_is_400(
    h: Harness, content_type: str, body: bytes, message: str
) -> None:
    response = await h.client.post(URL, headers={"content-type": content_type}, content=body)
    assert response.status_code == 400
    assert message in error(response)


async def test_one_bad_event_refuses_the_whole_batch_and_names_it(h: Harness) -> None:
    batch = [
        ENVELOPE,
        {**ENVELOPE, "id": "2"},
        {k: v for k, v in ENVELOPE.items() if k != "source"},
    ]
    response = await h.client.post(
        URL, headers={"content-type": BATCH}, content=orjson.dumps(batch)
    )
    assert response.status_code == 400
    assert error(response) == 'event [2]: missing required attribute "source" (member "source")'
    ttl = [ENVELOPE, {**ENVELOPE, "id": "2", "knativebrokerttl": 1}]
    response = await h.client.post(URL, headers={"content-type": BATCH}, content=orjson.dumps(ttl))
    assert error(response).startswith('event [1]: attribute "knativebrokerttl" arrived as 1')
    assert h.stored() == [] and h.woken == []


# ---- 404, 405, 413, 415, 503 ---------------------------------------------------------------------


async def test_an_unknown_broker_is_404_saying_how_to_create_it(h: Harness) -> None:
    response = await h.client.post("http://broker/default/nope", headers=BINARY)
    assert response.status_code == 404
    assert error(response) == (
        'broker "nope" not found in namespace "default"; create it with '
        "`knserve broker create nope -n default` or check the URL"
    )


@pytest.mark.parametrize("path", ["/", "/default", "/default/orders/extra", "//orders"])
async def test_a_path_that_is_not_namespace_slash_broker_is_404(h: Harness, path: str) -> None:
    response = await h.client.post(f"http://broker{path}", headers=BINARY)
    assert response.status_code == 404
    assert "the ingress path is /{namespace}/{broker}" in error(response)


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
async def test_other_methods_are_405_with_allow_post(h: Harness, method: str) -> None:
    response = await h.client.request(method, URL)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    if method != "HEAD":
        assert (
            error(response)
            == f"the broker ingress accepts only POST (CloudEvents over HTTP), not {method}"
        )


async def test_a_body_over_the_limit_is_413(h: Harness) -> None:
    h.ingress.max_body_bytes = 1024
    response = await h.client.post(URL, headers=BINARY, content=b"x" * 1025)
    assert response.status_code == 413
    assert error(response) == (
        "1025 bytes is over the broker's limit of 1024 bytes; send a large payload "
        "by reference (a URL in the event's data) or raise the ingress's max_body_bytes"
    )
    assert (await h.client.post(URL, headers=BINARY, content=b"x" * 1024)).status_code == 202


async def test_the_default_limit_is_4_mib_and_the_message_says_so(h: Harness) -> None:
    assert h.ingress.max_body_bytes == MAX_BODY_BYTES == 4 * 1024 * 1024
    response = await h.client.post(URL, headers=BINARY, content=b"x" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    assert "over the broker's limit of 4194304 bytes (4 MiB)" in error(response)


async def test_a_streamed_body_over_the_limit_is_413_without_reading_it_all(h: Harness) -> None:
    h.ingress.max_body_bytes = 1024
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b"x" * 512

    response = await h.client.post(URL, headers=BINARY, content=chunks())
    assert response.status_code == 413
    assert error(response).startswith("the request body is over the broker's limit of 1024 bytes")
    assert h.stored() == []


@pytest.mark.parametrize(
    "content_type", ["application/cloudevents+avro", "application/cloudevents-batch+protobuf"]
)
async def test_a_non_json_event_format_is_415(h: Harness, content_type: str) -> None:
    response = await h.client.post(URL, headers={"content-type": content_type}, content=b"\x00")
    assert response.status_code == 415
    assert "supports only application/cloudevents" in error(response)


async def test_a_log_that_cannot_commit_is_503_so_the_sender_retries(h: Harness) -> None:
    h.log.close()
    response = await h.client.post(URL, headers=BINARY)
    assert response.status_code == 503
    assert "it was not accepted, send it again" in error(response)
    h.log = EventLog(h.log.path, clock=lambda: NOW)  # for the fixture's close


# ---- decode, for the dispatcher's replies ------------------------------------------------------


def test_decode_reads_a_reply_in_either_mode() -> None:
    [binary] = decode(
        {"Ce-Specversion": "1.0", "Ce-Id": "1", "Ce-Source": "/s", "Ce-Type": "t"}, b"hi"
    )
    assert binary == {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": b"hi"}
    [structured] = decode({"Content-Type": f"{STRUCTURED}; charset=utf-8"}, orjson.dumps(ENVELOPE))
    assert structured == {**ENVELOPE, "data": None}
    with pytest.raises(Rejected) as info:
        decode({}, b"not an event")
    assert info.value.status == 400
