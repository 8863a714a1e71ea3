"""Delivery over HTTP: events from the ingress to subscribers, retries, dead letters, replies.

Subscribers are ASGI apps reached through ``httpx.ASGITransport`` by Host (``http://name/…``),
and ``http://127.0.0.1:…`` goes over real loopback sockets: a port nobody listens on for a
subscriber that is down, and uvicorn for the wire format. Events enter through the real
ingress. Back-offs are a few hundredths of a second; tests await arrivals, never sleep.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from net_fixtures import free_port, serve_in_loop

from knserve.eventing.backoff import Action, DeliverySpec
from knserve.eventing.dispatcher import Dispatcher, Outcome
from knserve.eventing.encoding import to_binary, to_structured
from knserve.eventing.eventlog import EventLog
from knserve.eventing.filters import compile_filters
from knserve.eventing.ingress import STRUCTURED, Ingress, decode
from knserve.runtime.asgi import read_body

WAIT = 5.0  # seconds to wait for what should take milliseconds


@dataclass(frozen=True)
class Answer:
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # the loop's clock on arrival


class Subscriber:
    """An ASGI subscriber: records requests, answers from ``script`` in turn and then with
    ``then`` (or ``reply(received)``), and holds requests while ``gate`` is closed."""

    def __init__(
        self,
        *script: Answer,
        then: Answer = Answer(202),
        reply: Callable[[Received], Answer] | None = None,
    ) -> None:
        self.script, self.then, self.reply = list(script), then, reply
        self.received: list[Received] = []
        self.gate: asyncio.Event | None = None
        self.active = self.max_active = 0
        self._arrived = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        got = Received(
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body,
            asyncio.get_running_loop().time(),
        )
        self.received.append(got)
        self._arrived.set()
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            self.active -= 1
        answer = self.script.pop(0) if self.script else self.reply(got) if self.reply else self.then
        raw = [(k.encode(), v.encode()) for k, v in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": raw})
        await send({"type": "http.response.body", "body": answer.body})

    async def wait_for(self, count: int) -> list[Received]:
        async with asyncio.timeout(WAIT):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.received

    def ids(self) -> list[str]:
        return [r.headers.get("ce-id", "") for r in self.received]


class Harness:
    """A broker: event log, ingress, dispatcher, and subscribers addressed by host name."""

    def __init__(self, path: Path, **dispatcher_options: Any) -> None:
        self.path = path
        self.subscribers: dict[str, Subscriber] = {}
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self._route),
            mounts={"http://127.0.0.1": httpx.AsyncHTTPTransport()},
        )
        self.outcomes: list[Outcome] = []
        self._outcome = asyncio.Event()
        self.log: EventLog
        self.open(**dispatcher_options)

    def open(self, **dispatcher_options: Any) -> None:
        self.log = EventLog(self.path)
        self.log.add_trigger(
            "spy", "default", "default"
        )  # sees everything stored, delivers nothing
        self.ingress = Ingress(self.log, lambda ns, name: name in ("default", "other"))
        self.dispatcher = Dispatcher(
            self.log,
            self.client,
            reply_to=self.ingress.accept,
            on_outcome=self._record,
            **dispatcher_options,
        )
        self.ingress.on_accepted = self.dispatcher.wake
        self.to_ingress = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.ingress), base_url="http://broker-ingress"
        )

    async def close(self) -> None:
        await self.dispatcher.close()
        await self.to_ingress.aclose()
        self.log.close()

    async def _route(self, scope: Any, receive: Any, send: Any) -> None:
        host = dict(scope["headers"]).get(b"host", b"").decode()
        await self.subscribers[host](scope, receive, send)

    def _record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self._outcome.set()

    def subscriber(self, name: str, subscriber: Subscriber) -> str:
        self.subscribers[name] = subscriber
        return f"http://{name}/events"

    def trigger(
        self,
        key: str,
        url: str,
        *,
        attributes: dict[str, str] | None = None,
        filters: list[Any] | None = None,
        delivery: dict[str, Any] | None = None,
        dead_letter_url: str | None = None,
        broker: str = "default",
    ) -> None:
        self.dispatcher.set_trigger(
            key,
            "default",
            broker,
            url,
            compile_filters(attributes, filters),
            DeliverySpec.from_spec(delivery or {}),
            dead_letter_url,
        )

    async def send(
        self,
        id: str,
        type: str = "order.created",
        broker: str = "default",
        data: bytes = b'{"total": 3}',
        **extensions: str,
    ) -> None:
        headers = {
            "ce-specversion": "1.0",
            "ce-id": id,
            "ce-source": "/shop",
            "ce-type": type,
            "content-type": "application/json",
            **{f"ce-{k}": v for k, v in extensions.items()},
        }
        response = await self.to_ingress.post(f"/default/{broker}", headers=headers, content=data)
        assert response.status_code == 202, response.text

    async def wait_outcomes(self, count: int, key: str | None = None) -> list[Outcome]:
        async with asyncio.timeout(WAIT):
            while len(mine := [o for o in self.outcomes if key in (None, o.trigger)]) < count:
                self._outcome.clear()
                await self._outcome.wait()
        return mine

    def stored(self) -> list[dict[str, Any]]:
        """Attributes of every event stored since the last call (through the "spy" trigger)."""
        events = self.log.pending("spy", 1000)
        for event in events:
            self.log.mark_delivered("spy", event.seq)
        return [event.attributes for event in events]


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path / "events.db")
    yield harness
    await harness.close()
    await harness.client.aclose()


@pytest.fixture
def down_url() -> str:
    return f"http://127.0.0.1:{free_port()}/events"


def reply_event(type: str, id: str = "reply-1", **extra: str) -> Answer:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id,
        "ce-source": "/predictor",
        "ce-type": type,
        "content-type": "application/json",
        **extra,
    }
    return Answer(200, headers, b'{"predictions": [1]}')


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


# ---- filters and isolation -----------------------------------------------------------------------


async def test_a_trigger_gets_only_the_events_its_filters_select(h: Harness) -> None:
    orders, eu = Subscriber(), Subscriber()
    h.trigger("orders", h.subscriber("orders", orders), attributes={"type": "order.created"})
    h.trigger("eu", h.subscriber("eu", eu), filters=[{"prefix": {"region": "eu-"}}])
    await h.send("1", type="order.created", region="us-east")
    await h.send("2", type="order.paid", region="eu-west")
    await h.send("3", type="order.created", region="eu-north")
    await orders.wait_for(2)
    await eu.wait_for(2)
    await h.wait_outcomes(4)
    assert sorted(orders.ids()) == ["1", "3"] and sorted(eu.ids()) == ["2", "3"]


async def test_events_of_another_broker_are_not_delivered(h: Harness) -> None:
    mine, theirs = Subscriber(), Subscriber()
    h.trigger("mine", h.subscriber("mine", mine))
    h.trigger("theirs", h.subscriber("theirs", theirs), broker="other")
    await h.send("1", broker="other")
    await h.send("2")
    await mine.wait_for(1)
    await theirs.wait_for(1)
    assert (mine.ids(), theirs.ids()) == (["2"], ["1"])


async def test_one_triggers_dead_subscriber_does_not_hold_up_another(
    h: Harness, down_url: str
) -> None:
    healthy = Subscriber()
    h.trigger(
        "stuck",
        down_url,
        delivery={"retry": 1000, "backoffDelay": "PT0.05S", "backoffPolicy": "linear"},
    )
    h.trigger("fine", h.subscriber("fine", healthy))
    for i in range(40):
        await h.send(str(i))
    await healthy.wait_for(40)
    assert sorted(healthy.ids(), key=int) == [str(i) for i in range(40)]
    assert h.log.backlog("stuck") == 40  # still trying, none lost


async def test_at_most_16_deliveries_are_in_flight_per_trigger(h: Harness) -> None:
    slow = Subscriber()
    slow.gate = asyncio.Event()
    h.trigger("t", h.subscriber("slow", slow))
    for i in range(40):
        await h.send(str(i))
    await slow.wait_for(16)
    for _ in range(50):  # let the dispatcher do anything it would do
        await asyncio.sleep(0)
    assert len(slow.received) == 16
    slow.gate.set()
    await slow.wait_for(40)
    await h.wait_outcomes(40)
    assert slow.max_active == 16 and sorted(set(slow.ids()), key=int) == [str(i) for i in range(40)]


async def test_a_removed_trigger_stops_and_forgets_its_events(h: Harness) -> None:
    slow = Subscriber()
    slow.gate = asyncio.Event()
    h.trigger("t", h.subscriber("slow", slow))
    await h.send("1")
    await slow.wait_for(1)
    await h.dispatcher.remove_trigger("t")
    assert "t" not in h.log.trigger_keys()
    await h.send("2")
    assert h.dispatcher.keys("default", "default") == []
    assert not h.dispatcher.running("t")


async def test_a_changed_subscriber_url_takes_effect(h: Harness) -> None:
    old, new = Subscriber(), Subscriber()
    h.trigger("t", h.subscriber("old", old))
    await h.send("1")
    await old.wait_for(1)
    h.trigger("t", h.subscriber("new", new))
    await h.send("2")
    await new.wait_for(1)
    assert (old.ids(), new.ids()) == (["1"], ["2"])


async def test_a_paused_trigger_keeps_its_events_until_it_runs_again(h: Harness) -> None:
    subscriber = Subscriber()
    await h.dispatcher.pause_trigger("t", "default", "default")
    await h.send("1")
    await h.send("2")
    assert h.log.backlog("t") == 2 and not h.dispatcher.running("t")
    h.trigger("t", h.subscriber("sub", subscriber))
    await subscriber.wait_for(2)
    assert sorted(subscriber.ids()) == ["1", "2"]


# ---- at least once across restarts ---------------------------------------------------------------


async def test_events_accepted_before_a_restart_are_delivered_after_it(h: Harness) -> None:
    await h.dispatcher.pause_trigger("t", "default", "default")
    for i in range(5):
        await h.send(str(i))
    await h.close()
    h.open()  # a new log connection and a new dispatcher on the same file
    subscriber = Subscriber()
    h.trigger("t", h.subscriber("sub", subscriber))
    await subscriber.wait_for(5)
    assert sorted(subscriber.ids()) == ["0", "1", "2", "3", "4"]


async def test_events_in_flight_when_the_process_died_are_delivered_after_a_restart(
    h: Harness,
) -> None:
    await h.dispatcher.pause_trigger("t", "default", "default")
    for i in range(3):
        await h.send(str(i))
    claimed = h.log.pending("t", 10)  # a dispatcher took them, then the process was killed
    assert len(claimed) == 3
    h.log.close()  # no mark_*: the claims die with the process
    await h.to_ingress.aclose()
    h.open()
    subscriber = Subscriber()
    h.trigger("t", h.subscriber("sub", subscriber))
    await subscriber.wait_for(3)
    assert sorted(subscriber.ids()) == ["0", "1", "2"]


async def test_a_retry_scheduled_before_a_restart_happens_after_it_on_time(h: Harness) -> None:
    flaky = Subscriber(Answer(503))
    h.trigger(
        "t",
        h.subscriber("flaky", flaky),
        delivery={"retry": 2, "backoffDelay": "PT0.1S", "backoffPolicy": "linear"},
    )
    await h.send("1")
    [retry] = await h.wait_outcomes(1)
    assert retry.action is Action.RETRY
    failed_at = flaky.received[0].at
    await h.close()
    h.open()
    h.outcomes.clear()
    h.trigger(
        "t",
        h.subscriber("flaky", flaky),
        delivery={"retry": 2, "backoffDelay": "PT0.1S", "backoffPolicy": "linear"},
    )
    [delivered] = await h.wait_outcomes(1)
    assert (delivered.action, delivered.attempts) == (Action.DELIVERED, 2)  # the count survived
    assert flaky.received[1].at - failed_at >= 0.1


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


# ---- the wire format -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "data", "member"),
    [
        pytest.param("application/json", b'{"a":1}', {"data": {"a": 1}}, id="json-inline"),
        pytest.param("application/cloudevents+json", b"[1]", {"data": [1]}, id="json-suffix"),
        pytest.param("text/plain", "café".encode(), {"data": "café"}, id="text-inline"),
        pytest.param(
            "application/octet-stream", b"\x00\xff", {"data_base64": "AP8="}, id="bytes-base64"
        ),
        pytest.param(
            "application/json", b"{oops", {"data_base64": "e29vcHM="}, id="bad-json-base64"
        ),
    ],
)
def test_structured_mode_inlines_json_and_text_and_base64_encodes_the_rest(
    content_type: str, data: bytes, member: dict[str, Any]
) -> None:
    attributes = {
        "specversion": "1.0",
        "id": "1",
        "source": "/s",
        "type": "t",
        "datacontenttype": content_type,
    }
    headers, body = to_structured(attributes, data)
    assert headers == {"content-type": STRUCTURED}
    assert orjson.loads(body) == {**attributes, **member}
    assert (
        decode(headers, body)[0]["data"] == data
    )  # what the ingress reads back (JSON as orjson writes it)


def test_binary_mode_percent_encodes_what_a_header_cannot_carry() -> None:
    headers, body = to_binary(
        {"id": "1", "subject": 'a "b" 100% é', "datacontenttype": "text/plain"}, None
    )
    assert headers == {
        "ce-id": "1",
        "ce-subject": "a%20%22b%22%20100%25%20%C3%A9",
        "content-type": "text/plain",
    }
    assert body == b""
