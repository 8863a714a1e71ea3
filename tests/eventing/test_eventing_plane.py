"""Eventing end to end on a real `knserve up`: brokers and triggers deliver through every filter
kind, retry with back-off, fill dead-letter sinks and carry replies back into the broker.

Events go into the plane's real ingress over HTTP; subscribers are a recording CloudEvents
server the test runs on a loopback port (:class:`broker_fixtures.Sink`). Async inference and the
payload logger are in test_inference_events_plane.py, a `kill -9` mid-stream in
test_broker_crash_plane.py, invalid events in test_invalid_events_plane.py.
"""

from __future__ import annotations

import base64
import itertools
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from broker_fixtures import BROKER, Sink, broker, ready, send, trigger
from plane_fixtures import LocalPlane

pytestmark = pytest.mark.slow


# ---- (b) every filter kind -----------------------------------------------------------------------

EVENTS = {  # id -> (type, source, extensions)
    "e1": ("com.example.order", "/shop/eu", {"region": "eu", "subject": "vip-1", "amount": "150"}),
    "e2": (
        "com.example.order",
        "/shop/us",
        {"region": "us", "subject": "regular-2", "amount": "50"},
    ),
    "e3": ("com.example.refund", "/shop/eu", {"region": "eu", "amount": "20"}),
    "e4": ("org.other.ping", "/probe", {}),
    "e5": (
        "com.example.order",
        "/shop/eu",
        {"region": "eu", "subject": "regular-5", "amount": "500"},
    ),
}
FILTERS: dict[str, tuple[dict[str, Any], set[str]]] = {
    "attributes": (
        {"filter": {"attributes": {"type": "com.example.order", "region": "eu"}}},
        {"e1", "e5"},
    ),
    "exact": ({"filters": [{"exact": {"type": "com.example.order"}}]}, {"e1", "e2", "e5"}),
    "prefix": ({"filters": [{"prefix": {"type": "com.example."}}]}, {"e1", "e2", "e3", "e5"}),
    "suffix": ({"filters": [{"suffix": {"source": "/eu"}}]}, {"e1", "e3", "e5"}),
    "all": (
        {
            "filters": [
                {"all": [{"exact": {"type": "com.example.order"}}, {"prefix": {"subject": "vip-"}}]}
            ]
        },
        {"e1"},
    ),
    "any": (
        {"filters": [{"any": [{"exact": {"region": "us"}}, {"suffix": {"type": ".refund"}}]}]},
        {"e2", "e3"},
    ),
    "not": ({"filters": [{"not": {"exact": {"type": "com.example.order"}}}]}, {"e3", "e4"}),
    "cesql": (
        {"filters": [{"cesql": "INT(amount) < 100 OR subject LIKE 'vip-%'"}]},
        {"e1", "e2", "e3"},
    ),
}


def test_every_filter_kind_selects_its_events_through_a_real_trigger(
    plane: LocalPlane, tmp_path: Path, sink: Sink
) -> None:
    ready(
        plane,
        tmp_path,
        broker(),
        *(
            trigger(f"only-{kind}", {"uri": sink.url(f"/{kind}")}, **spec)
            for kind, (spec, _) in FILTERS.items()
        ),
    )
    for event_id, (event_type, source, extensions) in EVENTS.items():
        send(plane, event_id, event_type, {"n": event_id}, source=source, **extensions)
    # the structured mode is the same event to a filter: one more like e4, sent as JSON
    structured = {
        "specversion": "1.0",
        "id": "e6",
        "source": "/probe",
        "type": "org.other.ping",
        "data": {"n": "e6"},
    }
    response = httpx.post(
        f"{plane.broker}/default/{BROKER}",
        content=orjson.dumps(structured),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert response.status_code == 202, response.text
    expected = {
        kind: ids | ({"e6"} if "e4" in ids else set()) for kind, (_, ids) in FILTERS.items()
    }
    total = sum(len(ids) for ids in expected.values())
    sink.wait(lambda got: len(got) >= total, 20, f"{total} deliveries", plane)
    time.sleep(0.3)  # anything a filter let through by mistake would be on its way by now
    got = {kind: {r.id for r in sink.at(f"/{kind}")} for kind in FILTERS}
    assert got == expected
    assert len(sink.received) == total  # each event once per trigger that wants it
    e1 = next(r for r in sink.at("/attributes") if r.id == "e1")
    assert e1.headers["ce-region"] == "eu" and orjson.loads(e1.body) == {"n": "e1"}


# ---- (c) retries with back-off, (d) dead letters, (e) replies ----------------------------------


def test_a_subscriber_that_fails_twice_gets_the_event_once_after_the_linear_back_off(
    plane: LocalPlane, tmp_path: Path, sink: Sink
) -> None:
    delivery = {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.2S"}
    ready(
        plane,
        tmp_path,
        broker(),
        trigger("flaky", {"uri": sink.url("/fail-twice")}, delivery=delivery),
    )
    send(plane, "r1", "com.example.flaky", {"n": 1})
    attempts = sink.wait(lambda got: len(got) >= 3, 20, "three attempts", plane)
    time.sleep(0.5)  # a wrongful fourth attempt would come 0.6 s after the third
    attempts = sink.at("/fail-twice")
    assert [a.id for a in attempts] == ["r1", "r1", "r1"]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.2, gaps  # linear: delay × 1 before the first retry
    assert gaps[1] >= 0.4, gaps  # … × 2 before the second
    assert gaps[1] < 3, gaps  # and not much more: it is a timer, not a poll


def test_a_subscriber_that_always_fails_fills_the_dead_letter_sink(
    plane: LocalPlane, tmp_path: Path, sink: Sink
) -> None:
    dls = {"uri": sink.url("/dead-letters")}
    ready(
        plane,
        tmp_path,
        broker(),
        trigger(
            "broken",
            {"uri": sink.url("/always-fail")},
            filter={"attributes": {"type": "a"}},
            delivery={
                "retry": 2,
                "backoffPolicy": "exponential",
                "backoffDelay": "PT0.05S",
                "deadLetterSink": dls,
            },
        ),
        trigger(
            "refusing",
            {"uri": sink.url("/bad-request")},
            filter={"attributes": {"type": "b"}},
            delivery={"retry": 5, "backoffDelay": "PT0.05S", "deadLetterSink": dls},
        ),
    )
    send(plane, "d1", "a", {"n": 1})
    send(plane, "d2", "b", {"n": 2})
    sink.wait(
        lambda got: len([r for r in got if r.path == "/dead-letters"]) >= 2,
        20,
        "two dead letters",
        plane,
    )
    dead = {r.id: r for r in sink.at("/dead-letters")}
    assert dead["d1"].headers["ce-knativeerrorcode"] == "500"
    assert dead["d1"].headers["ce-knativeerrordest"] == sink.url("/always-fail")
    assert base64.b64decode(dead["d1"].headers["ce-knativeerrordata"]) == b"model exploded"
    assert orjson.loads(dead["d1"].body) == {"n": 1}  # the event itself, unchanged
    assert len(sink.at("/always-fail")) == 3  # the attempt and its 2 retries
    # a 400 is not retried: straight to the dead-letter sink
    assert len(sink.at("/bad-request")) == 1
    assert dead["d2"].headers["ce-knativeerrorcode"] == "400"
    assert base64.b64decode(dead["d2"].headers["ce-knativeerrordata"]) == (
        b"no field named petal_length"
    )
    assert dead["d2"].headers["ce-type"] == "b"


def test_a_reply_goes_back_into_the_broker_and_on_to_its_subscriber(
    plane: LocalPlane, tmp_path: Path, sink: Sink
) -> None:
    ready(
        plane,
        tmp_path,
        broker(),
        trigger(
            "questions",
            {"uri": sink.url("/reply")},
            filter={"attributes": {"type": "com.example.question"}},
        ),
        trigger(
            "answers",
            {"uri": sink.url("/answers")},
            filter={"attributes": {"type": "com.example.answer"}},
        ),
    )
    send(plane, "q1", "com.example.question", {"question": 21})
    sink.wait(lambda got: any(r.path == "/answers" for r in got), 20, "the answer", plane)
    [answer] = sink.at("/answers")
    assert answer.id == "answer-q1"
    assert answer.headers["ce-source"] == "/replier"
    assert orjson.loads(answer.body) == {"answer": 42}
    assert "ce-knativearrivaltime" in answer.headers
    [question] = sink.at("/reply")
    assert question.headers.get("prefer") == "reply"  # Knative's dispatcher asks for one
