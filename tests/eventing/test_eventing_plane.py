"""Eventing end to end on a real `knserve up`: brokers, triggers, retries, dead letters, replies,
async inference through a scaled-to-zero predictor, a `kill -9` mid-stream, invalid events.

Events go into the plane's real ingress over HTTP; subscribers are a recording CloudEvents
server the test runs on a loopback port (:class:`Sink`), or the plane's own InferenceService.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools
import httpx
import orjson
import pytest
from net_fixtures import ServerProcess, eventually
from plane_fixtures import LocalPlane, apply

pytestmark = pytest.mark.slow

BROKER = "default"
SETOSA = [6.8, 2.8, 4.8, 1.4]  # KServe's iris example: class 1


# ---- a recording subscriber ----------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lowercase names
    body: bytes
    at: float  # time.monotonic() on arrival

    @property
    def id(self) -> str:
        return self.headers.get("ce-id", "")


Answer = tuple[int, list[tuple[str, str]], bytes]


class Sink:
    """A keep-alive HTTP/1.1 server (httptools, its own event loop in a thread) that records
    every request and answers by path:

    * ``/fail-twice…``: 503 to the first two attempts of an event id, then 200;
    * ``/always-fail…``: 500 with a body; ``/bad-request…``: 400 with a body;
    * ``/reply…``: 200 with a binary-mode CloudEvent of type ``com.example.answer``;
    * anything else: 200, empty -- but past ``hold(path, n)``'s first ``n`` requests, the answers
      on ``path`` wait (the connections stay busy) until ``release(path)``.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._attempts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._holds: dict[str, int] = {}  # path -> answers still let through before holding
        self._held: list[tuple[asyncio.Transport, bytes]] = []
        self._changed = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sink", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the sink did not start")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        with self._changed:
            return [r for r in self.received if r.path == path]

    def wait(
        self,
        done: Callable[[list[Received]], bool],
        timeout: float,
        what: str,
        plane: LocalPlane | None = None,
    ) -> list[Received]:
        """Wait until ``done(received)`` holds (woken by each arrival); fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    log = f"\n{plane.log()[-6000:]}" if plane is not None else ""
                    pytest.fail(
                        f"the sink never got {what} in {timeout}s; it got "
                        f"{len(self.received)} requests{log}"
                    )
                self._changed.wait(left)
            return list(self.received)

    def hold(self, path: str, let_through: int) -> None:
        """Answer the next ``let_through`` requests on ``path``, then hold the answers."""
        with self._changed:
            self._holds[path] = let_through

    def release(self, path: str) -> None:
        """Send the held answers (on connections still open) and answer at once from now on."""

        def release() -> None:
            with self._changed:
                self._holds.pop(path, None)
                held, self._held = self._held, []
            for transport, answer in held:
                if not transport.is_closing():
                    transport.write(answer)

        self._loop.call_soon_threadsafe(release)

    def _held_back(self, path: str) -> bool:
        with self._changed:
            if path not in self._holds:
                return False
            if self._holds[path] > 0:
                self._holds[path] -= 1
                return False
            return True

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def _answer(self, request: Received) -> Answer:
        with self._changed:
            self.received.append(request)
            self._attempts[(request.path, request.id)] += 1
            attempt = self._attempts[(request.path, request.id)]
            self._changed.notify_all()
        if request.path.startswith("/fail-twice"):
            return (503, [], b"busy") if attempt <= 2 else (200, [], b"")
        if request.path.startswith("/always-fail"):
            return 500, [("content-type", "text/plain")], b"model exploded"
        if request.path.startswith("/bad-request"):
            return 400, [("content-type", "text/plain")], b"no field named petal_length"
        if request.path.startswith("/reply"):
            question = orjson.loads(request.body)
            headers = [
                ("ce-specversion", "1.0"),
                ("ce-id", f"answer-{request.id}"),
                ("ce-source", "/replier"),
                ("ce-type", "com.example.answer"),
                ("content-type", "application/json"),
            ]
            return 200, headers, orjson.dumps({"answer": question["question"] * 2})
        return 200, [], b""

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        sink = self

        class Protocol(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport
                self.parser = httptools.HttpRequestParser(self)
                self.reset()

            def reset(self) -> None:
                self.url, self.headers, self.body = b"", {}, []

            def data_received(self, data: bytes) -> None:
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserError:
                    self.transport.close()

            def on_url(self, url: bytes) -> None:
                self.url += url

            def on_header(self, name: bytes, value: bytes) -> None:
                self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

            def on_body(self, body: bytes) -> None:
                self.body.append(body)

            def on_message_complete(self) -> None:
                path = httptools.parse_url(self.url).path.decode()
                request = Received(path, self.headers, b"".join(self.body), time.monotonic())
                self.reset()
                status, headers, body = sink._answer(request)
                head = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}"]
                head += [f"{k}: {v}" for k, v in headers]
                answer = ("\r\n".join(head) + "\r\n\r\n").encode() + body
                if sink._held_back(path):
                    with sink._changed:
                        sink._held.append((self.transport, answer))  # type: ignore[arg-type]
                    return
                self.transport.write(answer)  # type: ignore[attr-defined]

        self._server = self._loop.run_until_complete(
            self._loop.create_server(Protocol, "127.0.0.1", 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._started.set()
        self._loop.run_forever()


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


# ---- helpers -------------------------------------------------------------------------------------


def broker(name: str = BROKER, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def trigger(name: str, subscriber: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"broker": BROKER, "subscriber": subscriber, **spec},
    }


def ready(plane: LocalPlane, tmp_path: Path, *docs: dict[str, Any]) -> None:
    """Apply the objects and wait until each Broker and Trigger says Ready."""
    apply(plane, tmp_path, *docs)
    for doc in docs:
        if doc["kind"] in ("Broker", "Trigger"):
            plane.wait_ready(doc["kind"].lower() + "s", doc["metadata"]["name"], timeout=30)


def send(
    plane: LocalPlane,
    event_id: str,
    event_type: str,
    data: Any = None,
    *,
    source: str = "/test",
    **extensions: str,
) -> None:
    """One event into the broker in binary mode; it must be accepted (202)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": source,
        "ce-type": event_type,
        "content-type": "application/json",
    }
    headers.update({f"ce-{k}": v for k, v in extensions.items()})
    response = httpx.post(
        f"{plane.broker}/default/{BROKER}",
        headers=headers,
        content=orjson.dumps(data if data is not None else {}),
    )
    assert response.status_code == 202, response.text


# ---- (a) async inference through a scaled-to-zero predictor --------------------------------------


def test_async_inference_wakes_a_scaled_to_zero_predictor_and_the_answer_comes_back_as_an_event(
    fast_plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path, sink: Sink
) -> None:
    plane = fast_plane
    predictor = "sklearn-iris-predictor-00001"
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "sklearn-iris", "namespace": "default"},
        "spec": {
            "predictor": {
                "minReplicas": 0,
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": f"file://{sklearn_iris_dir}",
                },
            }
        },
    }
    ref = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "name": "sklearn-iris",
    }
    request_type = "io.kserve.inference.request"
    ready(
        plane,
        tmp_path,
        isvc,
        broker(),
        trigger(
            "predict-v1",
            {"ref": ref, "uri": "/v1/models/sklearn-iris:predict"},
            filter={"attributes": {"type": request_type, "protocol": "v1"}},
        ),
        trigger(
            "predict-v2",
            {"ref": ref, "uri": "/v2/models/sklearn-iris/infer"},
            filter={"attributes": {"type": request_type, "protocol": "v2"}},
        ),
        trigger(
            "answers",
            {"uri": sink.url("/answers")},
            filter={"attributes": {"type": "io.kserve.inference.response"}},
        ),
    )
    plane.wait_ready("inferenceservices", "sklearn-iris", timeout=60)
    # the autoscaler's tick is 1 s; its metrics are the only signal
    eventually(
        lambda: plane.metrics().get(predictor, {}).get("actual_pods") == 0,
        45,
        lambda: f"never scaled to zero: {plane.metrics()}",
        interval=0.2,
    )
    served_before = plane.metrics()[predictor].get("requests_total", 0)

    send(plane, "req-v1", request_type, {"instances": [SETOSA]}, protocol="v1")
    v2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": SETOSA}]}
    send(plane, "req-v2", request_type, v2, protocol="v2")

    answers = sink.wait(lambda got: len(got) >= 2, 60, "two inference responses", plane)
    by_request = {a.headers["ce-kserverequestid"]: a for a in answers}
    assert set(by_request) == {"req-v1", "req-v2"}
    for answer in answers:
        assert answer.path == "/answers"
        assert answer.headers["ce-type"] == "io.kserve.inference.response"
        assert answer.headers["ce-source"] == "io.kserve.inference.sklearn-iris"
        assert answer.headers["ce-kserverequestsource"] == "/test"
        assert "ce-knativearrivaltime" in answer.headers  # it went through the broker
        assert "ce-knativebrokerttl" not in answer.headers  # the broker's business only
    assert orjson.loads(by_request["req-v1"].body) == {"predictions": [1]}
    assert orjson.loads(by_request["req-v2"].body)["outputs"][0]["data"] == [1]
    woken = plane.metrics()[predictor]
    assert woken["requests_total"] >= served_before + 2
    assert woken["actual_pods"] >= 1  # the activator woke it (it stays for the stable window)


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


# ---- (e2) KServe's payload logger into a broker on the plane -------------------------------------

# KServe's documented logger URL for a broker; the plane's gateway routes it to its ingress.
BROKER_INGRESS = f"http://broker-ingress.knative-eventing.svc.cluster.local/default/{BROKER}"
LOGGED_TYPES = {"org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"}


def logged_isvc(name: str, storage: Path, logger: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "predictor": {
                "logger": logger,
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{storage}"},
            }
        },
    }


def replica_counters(plane: LocalPlane, host: str) -> dict[str, float]:
    """The runtime's own /metrics, read from the predictor's replica through the gateway."""
    from prometheus_client.parser import text_string_to_metric_families

    response = plane.call(host, "/metrics")
    assert response.status_code == 200, response.text
    return {
        sample.name.removesuffix("_total"): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if not sample.labels
    }


def test_payload_logger_events_reach_a_broker_on_the_plane_and_a_trigger_delivers_them(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path, sink: Sink
) -> None:
    ready(
        plane,
        tmp_path,
        broker(),
        trigger(
            "audit",
            {"uri": sink.url("/audit")},
            filters=[{"prefix": {"type": "org.kubeflow.serving.inference."}}],
        ),
        logged_isvc("sklearn-iris", sklearn_iris_dir, {"mode": "all", "url": BROKER_INGRESS}),
    )
    plane.wait_ready("inferenceservices", "sklearn-iris", timeout=60)
    host = "sklearn-iris.default.localhost"
    v1 = {"instances": [SETOSA]}
    v2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": SETOSA}]}
    calls = [(f"req-{i}", "/v1/models/sklearn-iris:predict", v1) for i in range(3)]
    calls += [(f"req-{i}", "/v2/models/sklearn-iris/infer", v2) for i in range(3, 6)]
    answers = {}
    for request_id, path, body in calls:
        response = plane.call(host, path, "POST", json=body, headers={"x-request-id": request_id})
        assert response.status_code == 200, response.text
        answers[request_id] = response.json()

    got = sink.wait(
        lambda r: len(r) >= 2 * len(calls),
        30,
        "a request and a response event for each of the six calls",
        plane,
    )
    assert {r.path for r in got} == {"/audit"}
    by_key = {(r.id, r.headers["ce-type"]): r for r in got}
    assert len(by_key) == len(got) == 2 * len(calls)  # each exactly once
    for request_id, _, body in calls:
        request = by_key[(request_id, "org.kubeflow.serving.inference.request")]
        response = by_key[(request_id, "org.kubeflow.serving.inference.response")]
        assert orjson.loads(request.body) == body
        assert orjson.loads(response.body) == answers[request_id]
        for event in (request, response):
            assert event.headers["ce-inferenceservicename"] == "sklearn-iris"
            assert event.headers["ce-namespace"] == "default"
            assert event.headers["ce-component"] == "predictor"
            assert event.headers["ce-modelname"] == "sklearn-iris"
            assert "ce-knativearrivaltime" in event.headers  # it went through the broker

    # The broker may deliver an event before the replica's logger has read the ingress's 202 for
    # it (the two run concurrently), so `sent` is awaited, not read once.
    def all_sent() -> dict[str, float] | None:
        seen = replica_counters(plane, "sklearn-iris-predictor.default.localhost")
        return seen if seen["knserve_payload_log_sent"] >= 2 * len(calls) else None

    counters = eventually(all_sent, 20, "the replica never counted its sends", interval=0.05)
    assert counters["knserve_payload_log_sent"] == 2 * len(calls)
    assert counters["knserve_payload_log_failed"] == counters["knserve_payload_log_dropped"] == 0


def test_a_dead_logger_sink_neither_fails_nor_slows_inference_and_is_counted(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    from net_fixtures import free_port

    dead = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    apply(
        plane, tmp_path, logged_isvc("audited", sklearn_iris_dir, {"mode": "request", "url": dead})
    )
    plane.wait_ready("inferenceservices", "audited", timeout=60)
    for _ in range(20):
        response = plane.call(
            "audited.default.localhost",
            "/v1/models/audited:predict",
            "POST",
            json={"instances": [SETOSA]},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": [1]}

    def counted() -> dict[str, float] | None:
        seen = replica_counters(plane, "audited-predictor.default.localhost")
        return (
            seen
            if seen["knserve_payload_log_failed"] + seen["knserve_payload_log_dropped"] >= 20
            else None
        )

    # the sends are asynchronous: their failures are counted after the answers
    counters = eventually(counted, 20, "the failed sends were never counted", interval=0.1)
    assert counters["knserve_payload_log_sent"] == 0
    # mode request: one event per call; after a refusal the logger backs off, dropping without
    # trying (tests/runtime/test_payload_logger.py counts the attempts exactly)
    assert counters["knserve_payload_log_failed"] + counters["knserve_payload_log_dropped"] == 20
    assert 1 <= counters["knserve_payload_log_failed"] < 20


# ---- (f) kill -9 in the middle of a stream --------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs prepared requests (httptools parses the
    answers): a few tens of microseconds a request, where httpx's pool spends a millisecond."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, request: bytes) -> int:
        """Send the request; its status. OSError when the connection fails (it is dropped)."""
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            self.writer.write(request)
            done = []
            parser = httptools.HttpResponseParser(_Done(done))
            while not done:
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise ConnectionResetError("the server closed the connection")
                parser.feed_data(chunk)
            if not parser.should_keep_alive():
                self.close()
            return int(parser.get_status_code())
        except (OSError, httptools.HttpParserError) as exc:
            self.close()
            raise OSError(str(exc)) from exc

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class _Done:
    def __init__(self, done: list[bool]) -> None:
        self.done = done

    def on_message_complete(self) -> None:
        self.done.append(True)


def ce_request(path: str, event_id: str, body: bytes = b'{"n": 1}') -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: broker\r\nce-specversion: 1.0\r\nce-id: {event_id}\r\n"
        f"ce-source: /stream\r\nce-type: com.example.tick\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


STREAM = 10_000
SENDERS = 32
KILL_AT = STREAM * 3 // 10  # accepted events when the plane is killed
DELIVERED_BEFORE = 500  # of those, how many the subscriber acknowledges before the kill


def test_kill_9_mid_stream_then_restart_delivers_every_accepted_event(
    spawn: Callable[..., ServerProcess], tmp_path: Path, sink: Sink
) -> None:
    """32 producers send 10,000 events; after 3,000 are accepted the plane is killed with
    SIGKILL and started again on the same data dir, and the producers carry on (an event they
    sent without getting its 202 is sent again, as a producer does). The subscriber acknowledges
    500 events, then holds its answers until the restart, so at the kill the broker owes
    thousands of accepted events, 16 of them in flight. Every event must arrive at least once."""
    plane = LocalPlane(spawn, tmp_path / "plane", ["--log-level", "info"])  # debug costs ~2x here
    try:
        ready(plane, tmp_path, broker(), trigger("stream", {"uri": sink.url("/stream")}))
        sink.hold("/stream", DELIVERED_BEFORE)
        port = plane.broker_port
        accepted: set[str] = set()
        kill_at: dict[str, int] = {}

        async def stream() -> None:
            todo = collections.deque(f"s{i:05d}" for i in range(STREAM))
            deadline = time.monotonic() + 60
            crash: asyncio.Task[None] | None = None

            async def crash_and_restart() -> None:
                kill_at["accepted"] = len(accepted)
                kill_at["received"] = len({r.id for r in sink.at("/stream")})
                await asyncio.to_thread(plane.kill_and_restart)
                sink.release("/stream")

            async def sender() -> None:
                nonlocal crash
                connection = Connection("127.0.0.1", port)
                while todo:
                    event_id = todo.popleft()
                    request = ce_request(f"/default/{BROKER}", event_id)
                    while True:  # as a producer does: until the broker says it has the event
                        assert time.monotonic() < deadline, (
                            f"only {len(accepted)} accepted in 60 s (kill at {kill_at})"
                        )
                        try:
                            status = await connection.post(request)
                        except OSError:
                            await asyncio.sleep(0.05)  # the plane is down: try again soon
                            continue
                        if status == 202:
                            accepted.add(event_id)
                            break
                        assert status == 503, f"{event_id}: the ingress answered {status}"
                        await asyncio.sleep(0.05)
                    if crash is None and len(accepted) >= KILL_AT:
                        crash = asyncio.create_task(crash_and_restart())
                connection.close()

            await asyncio.gather(*(sender() for _ in range(SENDERS)))
            assert crash is not None
            await crash

        asyncio.run(stream())
        assert len(accepted) == STREAM
        # the broker owed most of what it had accepted when it died
        assert kill_at["received"] <= DELIVERED_BEFORE + 64 < kill_at["accepted"] < STREAM, kill_at
        sink.wait(
            lambda got: len({r.id for r in got}) >= STREAM,
            60,
            f"all {STREAM} events (kill at {kill_at})",
            plane,
        )
        delivered = collections.Counter(r.id for r in sink.at("/stream"))
        assert set(delivered) == accepted
    finally:
        plane.close()


# ---- (g) invalid events through the real ingress --------------------------------------------------

CE = {
    "ce-specversion": "1.0",
    "ce-id": "x1",
    "ce-source": "/test",
    "ce-type": "t",
    "content-type": "application/json",
}


def without(name: str) -> dict[str, str]:
    return {k: v for k, v in CE.items() if k != name}


INVALID: list[tuple[str, str, str, dict[str, str], bytes, int, str]] = [
    # what, method, path, headers, body, status, in the message
    (
        "no specversion",
        "POST",
        "/default/default",
        without("ce-specversion"),
        b"{}",
        400,
        'missing required attribute "specversion"',
    ),
    (
        "no id",
        "POST",
        "/default/default",
        without("ce-id"),
        b"{}",
        400,
        'missing required attribute "id" (header ce-id)',
    ),
    (
        "no source",
        "POST",
        "/default/default",
        without("ce-source"),
        b"{}",
        400,
        'missing required attribute "source" (header ce-source)',
    ),
    (
        "no type",
        "POST",
        "/default/default",
        without("ce-type"),
        b"{}",
        400,
        'missing required attribute "type" (header ce-type)',
    ),
    (
        "structured, no id",
        "POST",
        "/default/default",
        {"content-type": "application/cloudevents+json"},
        b'{"specversion": "1.0", "source": "/s", "type": "t"}',
        400,
        'missing required attribute "id" (member "id")',
    ),
    (
        "specversion 0.3",
        "POST",
        "/default/default",
        {**CE, "ce-specversion": "0.3"},
        b"{}",
        400,
        'specversion "0.3" is not supported',
    ),
    ("empty id", "POST", "/default/default", {**CE, "ce-id": ""}, b"{}", 400, '"id" is empty'),
    (
        "ttl spent",
        "POST",
        "/default/default",
        {**CE, "ce-knativebrokerttl": "1"},
        b"{}",
        400,
        "is spent",
    ),
    (
        "unknown broker",
        "POST",
        "/default/nope",
        CE,
        b"{}",
        404,
        'broker "nope" not found in namespace "default"',
    ),
    ("not a broker path", "POST", "/default", CE, b"{}", 404, "/{namespace}/{broker}"),
    ("GET", "GET", "/default/default", {}, b"", 405, "accepts only POST"),
    ("PUT", "PUT", "/default/default", CE, b"{}", 405, "accepts only POST"),
    (
        "too big",
        "POST",
        "/default/default",
        CE,
        b"[" + b"1," * (2 * 1024 * 1024) + b"1]",
        413,
        "over the broker's limit of 4194304 bytes",
    ),
    (
        "XML structured",
        "POST",
        "/default/default",
        {"content-type": "application/cloudevents+xml"},
        b"<e/>",
        415,
        "structured mode supports only application/cloudevents+json",
    ),
]


def test_every_invalid_event_gets_its_status_and_a_message_that_says_what_to_fix(
    plane: LocalPlane, tmp_path: Path, sink: Sink
) -> None:
    ready(plane, tmp_path, broker(), trigger("all", {"uri": sink.url("/all")}))
    wrong = []
    with httpx.Client(base_url=plane.broker) as client:
        for what, method, path, headers, body, status, message in INVALID:
            try:
                response = client.request(method, path, headers=headers, content=body)
            except httpx.TransportError as exc:  # the ingress must answer, not hang up
                wrong.append(f"{what}: no answer ({exc!r})")
                continue
            error = response.json().get("error", "") if response.content else ""
            if response.status_code != status or message not in error:
                wrong.append(
                    f"{what}: {response.status_code} {error!r}, wanted {status} {message!r}"
                )
            if status == 405 and response.headers.get("allow") != "POST":
                wrong.append(f"{what}: Allow is {response.headers.get('allow')!r}")
        assert not wrong, "\n".join(wrong)
        # nothing refused was stored; a valid event after them still goes through
        assert (
            client.post(
                "/default/default", headers={**CE, "ce-id": "ok"}, content=b"{}"
            ).status_code
            == 202
        )
    sink.wait(lambda got: len(got) >= 1, 10, "the valid event", plane)
    time.sleep(0.2)
    assert [r.id for r in sink.received] == ["ok"]
