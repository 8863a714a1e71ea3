"""Delivery over HTTP: events from the ingress to subscribers, retries, dead letters.

Subscribers are ASGI apps reached through ``httpx.ASGITransport`` by Host (``http://name/…``),
and ``http://127.0.0.1:…`` goes over real loopback sockets: a port nobody listens on for a
subscriber that is down, and uvicorn for the wire format. Events enter through the real
ingress. Back-offs are a few hundredths of a second; tests await arrivals, never sleep.

Replies are in test_dispatcher_replies.py, filters and isolation between triggers in
test_dispatcher_triggers.py, restarts in test_dispatcher_restarts.py, the wire format in
test_encoding.py; the broker they share is tests/support/dispatcher_harness.py.
"""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx
import orjson
import pytest
from dispatcher_harness import Answer, Harness, Subscriber
from net_fixtures import serve_in_loop

from knserve.eventing.backoff import Action
from knserve.eventing.dispatcher import Dispatcher
from knserve.eventing.eventlog import EventLog
from knserve.eventing.ingress import STRUCTURED

# ---- delivery ------------------------------------------------------------------------------------


async def test_an_event_reaches_the_subscriber_over_http_in_binary_mode_without_the_ttl(
    h: Harness,
) -> None:
    subscriber = Subscriber()
    async with serve_in_loop(subscriber) as base:
        h.trigger("t", f"{base}/events")
        await h.send("42", subject="caf%C3%A9 au lait")
        [got] = await subscriber.wait_for(1)
    assert got.body == b'{"total": 3}'
    assert {
        k: v for k, v in got.headers.items() if k.startswith("ce-") and k != "ce-knativearrivaltime"
    } == {
        "ce-specversion": "1.0",
        "ce-id": "42",
        "ce-source": "/shop",
        "ce-type": "order.created",
        "ce-subject": "caf%C3%A9%20au%20lait",  # percent-encoded on the wire, as the binding says
    }
    assert got.headers["content-type"] == "application/json"
    assert got.headers["ce-knativearrivaltime"].endswith("Z")
    assert got.headers["prefer"] == "reply"
    [outcome] = await h.wait_outcomes(1)
    assert (outcome.action, outcome.status, outcome.attempts) == (Action.DELIVERED, 202, 1)
    assert h.log.backlog("t") == 0


async def test_delivery_format_json_sends_a_structured_event(h: Harness) -> None:
    subscriber = Subscriber()
    h.trigger("t", h.subscriber("sub", subscriber), delivery={"format": "json"})
    await h.send("1")
    [got] = await subscriber.wait_for(1)
    assert got.headers["content-type"] == STRUCTURED
    envelope = orjson.loads(got.body)
    assert envelope["data"] == {"total": 3} and envelope["id"] == "1"
    assert "knativebrokerttl" not in envelope


async def test_a_subscriber_failing_twice_gets_the_event_a_third_time_after_the_backoff(
    h: Harness,
) -> None:
    subscriber = Subscriber(Answer(503), Answer(500))
    delivery = {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.05S"}
    h.trigger("t", h.subscriber("flaky", subscriber), delivery=delivery)
    await h.send("1")
    first, second, third = await subscriber.wait_for(3)
    assert second.at - first.at >= 0.05  # linear: delay × 1 before the first retry
    assert third.at - second.at >= 0.10  # delay × 2 before the second
    outcomes = await h.wait_outcomes(3)
    assert [(o.action, o.status, o.attempts) for o in outcomes] == [
        (Action.RETRY, 503, 1),
        (Action.RETRY, 500, 2),
        (Action.DELIVERED, 202, 3),
    ]
    assert [o.delay for o in outcomes[:2]] == pytest.approx([0.05, 0.10])
    assert subscriber.ids() == ["1", "1", "1"] and len(subscriber.received) == 3
    assert h.dispatcher.stats("t").delivered == 1 and h.log.backlog("t") == 0


async def test_retry_after_is_honoured_up_to_retry_after_max(h: Harness) -> None:
    subscriber = Subscriber(Answer(429, {"retry-after": "30"}))
    delivery = {"retry": 1, "backoffDelay": "PT0.01S", "retryAfterMax": "PT0.1S"}
    h.trigger("t", h.subscriber("busy", subscriber), delivery=delivery)
    await h.send("1")
    first, second = await subscriber.wait_for(2)
    assert second.at - first.at >= 0.1
    retry, _ = await h.wait_outcomes(2)
    assert retry.delay == pytest.approx(0.1)


async def test_exhausted_retries_go_to_the_dead_letter_sink_with_knative_error_extensions(
    h: Harness,
) -> None:
    subscriber = Subscriber(then=Answer(503, body=b"model overloaded"))
    dead = Subscriber()
    url = h.subscriber("failing", subscriber)
    delivery = {"retry": 2, "backoffDelay": "PT0.01S"}
    h.trigger("t", url, delivery=delivery, dead_letter_url=h.subscriber("dls", dead))
    await h.send("1", region="eu")
    [got] = await dead.wait_for(1)
    assert len(subscriber.received) == 3  # the first attempt and two retries
    assert got.headers["ce-knativeerrordest"] == url
    assert got.headers["ce-knativeerrorcode"] == "503"
    assert base64.b64decode(got.headers["ce-knativeerrordata"]) == b"model overloaded"
    assert (got.headers["ce-id"], got.headers["ce-region"], got.body) == (
        "1",
        "eu",
        b'{"total": 3}',
    )
    assert "ce-knativebrokerttl" not in got.headers
    *_, last = await h.wait_outcomes(3)
    assert (last.action, last.dead_lettered) == (Action.DEAD_LETTER, True)
    assert h.log.dead_letters("t") == 1 and h.dispatcher.stats("t").dead_lettered == 1


@pytest.mark.parametrize("status", [400, 401, 403, 413, 301], ids=str)
async def test_a_non_retryable_answer_goes_to_the_dead_letter_sink_at_once(
    h: Harness, status: int
) -> None:
    subscriber = Subscriber(then=Answer(status))
    dead = Subscriber()
    h.trigger(
        "t",
        h.subscriber("picky", subscriber),
        delivery={"retry": 5, "backoffDelay": "PT0.01S"},
        dead_letter_url=h.subscriber("dls", dead),
    )
    await h.send("1")
    [got] = await dead.wait_for(1)
    assert got.headers["ce-knativeerrorcode"] == str(status)
    assert "ce-knativeerrordata" not in got.headers  # the subscriber's body was empty
    assert len(subscriber.received) == 1


async def test_error_data_carries_at_most_1024_bytes_of_the_failed_body(h: Harness) -> None:
    body = bytes(range(256)) * 20
    dead = Subscriber()
    h.trigger(
        "t",
        h.subscriber("verbose", Subscriber(then=Answer(400, body=body))),
        dead_letter_url=h.subscriber("dls", dead),
    )
    await h.send("1")
    [got] = await dead.wait_for(1)
    assert base64.b64decode(got.headers["ce-knativeerrordata"]) == body[:1024]


async def test_an_unreachable_subscriber_is_retried_then_dead_lettered_with_code_500(
    h: Harness, down_url: str
) -> None:
    dead = Subscriber()
    h.trigger(
        "t",
        down_url,
        delivery={"retry": 1, "backoffDelay": "PT0.01S"},
        dead_letter_url=h.subscriber("dls", dead),
    )
    await h.send("1")
    [got] = await dead.wait_for(1)
    assert got.headers["ce-knativeerrordest"] == down_url
    assert got.headers["ce-knativeerrorcode"] == "500"  # Knative's code for "no answer"
    assert base64.b64decode(got.headers["ce-knativeerrordata"]).startswith(b"dispatch error: ")
    assert [o.status for o in await h.wait_outcomes(2)] == [None, None]


async def test_a_subscriber_slower_than_the_timeout_is_retried(h: Harness) -> None:
    subscriber = Subscriber()
    subscriber.gate = asyncio.Event()  # never opened: every attempt hangs
    h.trigger(
        "t",
        h.subscriber("slow", subscriber),
        delivery={"retry": 1, "backoffDelay": "PT0.01S", "timeout": "PT0.05S"},
    )
    await h.send("1")
    outcomes = await h.wait_outcomes(2)
    assert [(o.action, o.status) for o in outcomes] == [
        (Action.RETRY, None),
        (Action.DEAD_LETTER, None),
    ]
    assert h.dispatcher.stats("t").dropped == 1


async def test_without_a_dead_letter_sink_a_failed_event_is_dropped_and_counted(h: Harness) -> None:
    h.trigger("t", h.subscriber("broken", Subscriber(then=Answer(500))), delivery={"retry": 0})
    await h.send("1")
    [outcome] = await h.wait_outcomes(1)
    assert (outcome.action, outcome.dead_lettered) == (Action.DEAD_LETTER, False)
    assert h.dispatcher.stats("t").dropped == 1
    assert h.log.dead_letters("t") == 1 and h.log.backlog("t") == 0


async def test_a_failing_dead_letter_sink_is_retried_then_the_event_is_dropped(
    h: Harness, down_url: str
) -> None:
    dead = Subscriber(Answer(503), then=Answer(500))
    h.trigger(
        "t",
        down_url,
        delivery={"retry": 1, "backoffDelay": "PT0.01S"},
        dead_letter_url=h.subscriber("dls", dead),
    )
    await h.send("1")
    await h.wait_outcomes(2)
    assert len(dead.received) == 2  # the sink gets the delivery's retries too
    assert h.dispatcher.stats("t").dropped == 1 and h.log.backlog("t") == 0


# ---- construction ----------------------------------------------------------------------------------


def test_concurrency_must_be_positive(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "e.db")
    with pytest.raises(ValueError, match="concurrency is 0; it must be 1 or more"):
        Dispatcher(log, httpx.AsyncClient(), concurrency=0)
    log.close()


async def test_a_trigger_cannot_move_to_another_broker_under_the_same_key(h: Harness) -> None:
    h.trigger("t", h.subscriber("sub", Subscriber()))
    with pytest.raises(ValueError, match="remove it first"):
        h.trigger("t", h.subscriber("sub", Subscriber()), broker="other")
