"""Replies: a subscriber's answer that is a CloudEvent goes back into the broker, carrying the
delivered event's TTL; a spent TTL, a plain body or a malformed reply do not loop or fail the
delivery. Subscribers are ASGI apps (tests/support/dispatcher_harness.py).
"""

from __future__ import annotations

import orjson
from dispatcher_harness import Answer, Harness, Subscriber, reply_event

from knserve.eventing.backoff import Action
from knserve.eventing.ingress import STRUCTURED

# ---- replies -------------------------------------------------------------------------------------


async def test_a_reply_goes_back_into_the_broker_carrying_the_delivered_events_ttl(
    h: Harness,
) -> None:
    predictor = Subscriber(then=reply_event("io.kserve.inference.response"))
    sink = Subscriber()
    h.trigger(
        "predict",
        h.subscriber("predictor", predictor),
        attributes={"type": "io.kserve.inference.request"},
    )
    h.trigger(
        "answers", h.subscriber("sink", sink), attributes={"type": "io.kserve.inference.response"}
    )
    await h.send("req-1", type="io.kserve.inference.request")
    [answer] = await sink.wait_for(1)
    assert (answer.headers["ce-id"], answer.headers["ce-source"]) == ("reply-1", "/predictor")
    assert answer.body == b'{"predictions": [1]}'
    request, reply = h.stored()
    assert (request["knativebrokerttl"], reply["knativebrokerttl"]) == ("255", "254")
    assert h.dispatcher.stats("predict").replies == 1


async def test_a_structured_reply_is_a_reply_too(h: Harness) -> None:
    envelope = {
        "specversion": "1.0",
        "id": "r",
        "source": "/p",
        "type": "done",
        "data": {"ok": True},
    }
    answer = Answer(200, {"content-type": STRUCTURED}, orjson.dumps(envelope))
    sink = Subscriber()
    h.trigger("work", h.subscriber("worker", Subscriber(then=answer)), attributes={"type": "todo"})
    h.trigger("done", h.subscriber("sink", sink), attributes={"type": "done"})
    await h.send("1", type="todo")
    [got] = await sink.wait_for(1)
    assert got.body == b'{"ok":true}' and got.headers["ce-id"] == "r"


async def test_a_reply_whose_ttl_runs_out_is_refused_and_the_delivery_stands(h: Harness) -> None:
    echo = Subscriber(then=reply_event("ping", id="again"))
    h.trigger("loop", h.subscriber("echo", echo), attributes={"type": "ping"})
    await h.send("1", type="ping", knativebrokerttl="2")  # stored with 1; the reply would get 0
    [outcome] = await h.wait_outcomes(1)
    assert (outcome.action, outcome.replied) == (Action.DELIVERED, False)
    assert h.dispatcher.stats("loop").replies_refused == 1
    assert [e["id"] for e in h.stored()] == ["1"]


async def test_a_reply_loop_ends_when_the_ttl_is_spent(h: Harness) -> None:
    """A subscriber that answers every ping with a new ping: 3 hops, then the broker says no."""
    counter = iter(range(100))
    echo = Subscriber(reply=lambda got: reply_event("ping", id=f"p{next(counter)}"))
    h.trigger("loop", h.subscriber("echo", echo), attributes={"type": "ping"})
    await h.send("start", type="ping", knativebrokerttl="4")  # stored with 3
    await h.wait_outcomes(3)
    assert echo.ids() == ["start", "p0", "p1"]
    assert (
        h.dispatcher.stats("loop").replies == 2 and h.dispatcher.stats("loop").replies_refused == 1
    )


async def test_a_2xx_with_a_plain_body_is_a_success_not_a_reply(h: Harness) -> None:
    answer = Answer(200, {"content-type": "application/json"}, b'{"ok": true}')
    h.trigger("t", h.subscriber("plain", Subscriber(then=answer)))
    await h.send("1")
    [outcome] = await h.wait_outcomes(1)
    assert (outcome.action, outcome.replied) == (Action.DELIVERED, False)
    assert [e["id"] for e in h.stored()] == ["1"]


async def test_a_malformed_reply_is_dropped_and_the_delivery_counts(h: Harness) -> None:
    answer = Answer(200, {"ce-specversion": "1.0", "ce-type": "x"}, b"{}")  # no id, no source
    h.trigger("t", h.subscriber("sloppy", Subscriber(then=answer)))
    await h.send("1")
    [outcome] = await h.wait_outcomes(1)
    assert outcome.action is Action.DELIVERED
    assert h.dispatcher.stats("t").replies_refused == 1
    assert [e["id"] for e in h.stored()] == ["1"]
