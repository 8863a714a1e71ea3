"""The Eventing controller in process: Broker and Trigger status, and the delivery loops it runs.

A real store (SQLite under tmp_path), event log, ingress and dispatcher; subscribers are ASGI
apps reached by Host through ``httpx.ASGITransport``, so a Knative Service's URL
(``http://iris.default.localhost``) is delivered to as the plane's gateway would route it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from knserve.eventing.controller import EventingController, trigger_key
from knserve.eventing.dispatcher import Dispatcher, Outcome
from knserve.eventing.eventlog import EventLog
from knserve.eventing.ingress import Ingress
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.store import Store
from knserve.runtime.asgi import read_body

BROKERS, TRIGGERS, SERVICES = by_name("brokers"), by_name("triggers"), by_name("services")
WAIT = 5.0


class Recorder:
    """An ASGI subscriber that records CloudEvent ids and answers ``status``."""

    def __init__(self, status: int = 202) -> None:
        self.status, self.ids = status, []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await read_body(receive)
        self.ids.append(dict(scope["headers"]).get(b"ce-id", b"").decode())
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class Plane:
    """The eventing half of the local plane, in process."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = Store(tmp_path / "state.db")
        self.log = EventLog(tmp_path / "events.db")
        self.hosts: dict[str, Recorder] = {}
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self._route))
        self.outcomes: list[Outcome] = []
        self.dispatcher = Dispatcher(self.log, self.client, on_outcome=self.outcomes.append)
        self.controller = EventingController(
            self.store,
            self.dispatcher,
            self.log,
            self._service_url,
            lambda ns, name: f"http://broker-ingress.localhost/{ns}/{name}",
        )
        self.ingress = Ingress(
            self.log, self.controller.broker_exists, on_accepted=self.dispatcher.wake
        )
        self.dispatcher.reply_to = self.ingress.accept
        self.to_ingress = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.ingress),
            base_url="http://broker-ingress.localhost",
        )
        self.task: asyncio.Task[None] | None = None

    def _service_url(self, namespace: str, name: str) -> str | None:
        svc = self.store.find(SERVICES, namespace, name)
        return ((svc or {}).get("status") or {}).get("url")

    async def _route(self, scope: Any, receive: Any, send: Any) -> None:
        host = dict(scope["headers"]).get(b"host", b"").decode()
        await self.hosts[host](scope, receive, send)

    def start(self) -> None:
        self.task = asyncio.create_task(self.controller.run(), name="eventing controller")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.dispatcher.close()
        await self.client.aclose()
        await self.to_ingress.aclose()
        self.log.close()
        self.store.close()

    # objects

    def broker(
        self, name: str = "default", delivery: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        obj: dict[str, Any] = {"metadata": {"name": name, "namespace": "default"}, "spec": {}}
        if delivery is not None:
            obj["spec"]["delivery"] = delivery
        return self.store.create(BROKERS, obj)

    def trigger(
        self, name: str, subscriber: dict[str, Any], broker: str = "default", **spec: Any
    ) -> dict[str, Any]:
        return self.store.create(
            TRIGGERS,
            {
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"broker": broker, "subscriber": subscriber, **spec},
            },
        )

    def service(self, name: str, url: str | None = None) -> Recorder:
        svc = self.store.create(
            SERVICES,
            {
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}},
            },
        )
        recorder = Recorder()
        if url is not None:
            svc["status"] = {"url": url, "conditions": [{"type": "Ready", "status": "True"}]}
            self.store.replace(SERVICES, svc, subresource="status")
            self.hosts[url.removeprefix("http://")] = recorder
        return recorder

    def get(self, kind: Any, name: str) -> dict[str, Any]:
        return self.store.get(kind, "default", name)

    async def send(self, id: str, broker: str = "default", type: str = "order.created") -> int:
        headers = {"ce-specversion": "1.0", "ce-id": id, "ce-source": "/shop", "ce-type": type}
        return (
            await self.to_ingress.post(f"/default/{broker}", headers=headers, content=b"{}")
        ).status_code


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[Plane]:
    p = Plane(tmp_path)
    yield p
    await p.stop()


async def eventually(check: Callable[[], Any]) -> Any:
    """Let the controller and the dispatcher run until ``check()`` is truthy (no wall-clock
    sleeps: each round yields to the loop once; the deadline only catches a hang)."""
    async with asyncio.timeout(WAIT):
        while not (result := check()):
            await asyncio.sleep(0.001)
    return result


def conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str | None, str | None]]:
    return {
        c["type"]: (c["status"], c.get("reason"), c.get("message"))
        for c in (obj.get("status") or {}).get("conditions") or []
    }


def ready(plane: Plane, kind: Any, name: str) -> str | None:
    return conditions(plane.get(kind, name)).get("Ready", (None,))[0]


# ---- brokers -----------------------------------------------------------------------------------


async def test_a_broker_is_addressable_at_the_ingress_and_ready(plane: Plane) -> None:
    plane.broker()
    plane.start()
    await eventually(lambda: ready(plane, BROKERS, "default") == "True")
    status = plane.get(BROKERS, "default")["status"]
    url = "http://broker-ingress.localhost/default/default"
    assert status["address"] == {"name": "http", "url": url}
    assert status["addresses"] == [{"name": "http", "url": url}]
    assert status["observedGeneration"] == 1
    assert [c["type"] for c in status["conditions"]] == [
        "Ready",
        "Addressable",
        "DeadLetterSinkResolved",
        "FilterReady",
        "IngressReady",
    ]
    assert conditions(plane.get(BROKERS, "default"))["DeadLetterSinkResolved"] == (
        "True",
        "DeadLetterSinkNotConfigured",
        "No dead letter sink is configured.",
    )
    assert plane.controller.broker_exists("default", "default")
    assert await plane.send("1") == 202
    assert await plane.send("1", broker="nope") == 404


async def test_a_broker_with_an_invalid_delivery_says_what_to_write(plane: Plane) -> None:
    plane.broker(delivery={"retry": 3, "backoffDelay": "5s"})
    plane.start()
    await eventually(lambda: ready(plane, BROKERS, "default") == "False")
    _, reason, message = conditions(plane.get(BROKERS, "default"))["Ready"]
    assert reason == "InvalidDelivery"
    assert message == 'spec.delivery.backoffDelay "5s" is not an ISO 8601 duration; write PT5S'


async def test_a_brokers_dead_letter_sink_resolves_once_its_service_exists(plane: Plane) -> None:
    plane.broker(
        delivery={
            "deadLetterSink": {
                "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "dlq"}
            }
        }
    )
    plane.start()
    await eventually(lambda: ready(plane, BROKERS, "default") == "False")
    assert conditions(plane.get(BROKERS, "default"))["DeadLetterSinkResolved"] == (
        "False",
        "NotFound",
        'service "dlq" not found in namespace "default"',
    )
    plane.service("dlq", "http://dlq.default.localhost")
    await eventually(lambda: ready(plane, BROKERS, "default") == "True")
    assert (
        plane.get(BROKERS, "default")["status"]["deadLetterSinkUri"]
        == "http://dlq.default.localhost"
    )


async def test_an_unchanged_status_is_not_written_again(plane: Plane) -> None:
    plane.broker()
    plane.start()
    await eventually(lambda: ready(plane, BROKERS, "default") == "True")
    version = plane.get(BROKERS, "default")["metadata"]["resourceVersion"]
    plane.controller.reconcile_broker("default", "default")
    assert plane.get(BROKERS, "default")["metadata"]["resourceVersion"] == version


# ---- triggers ----------------------------------------------------------------------------------


KSVC = {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "iris"}}


async def test_a_trigger_delivers_to_its_knative_service_by_url(plane: Plane) -> None:
    iris = plane.service("iris", "http://iris.default.localhost")
    plane.broker()
    plane.trigger("predict", KSVC, filter={"attributes": {"type": "order.created"}})
    plane.start()
    await eventually(lambda: ready(plane, TRIGGERS, "predict") == "True")
    trigger = plane.get(TRIGGERS, "predict")
    assert trigger["status"]["subscriberUri"] == "http://iris.default.localhost"
    assert [c["type"] for c in trigger["status"]["conditions"]] == [
        "Ready",
        "BrokerReady",
        "DeadLetterSinkResolved",
        "DependencyReady",
        "SubscriberResolved",
        "SubscriptionReady",
    ]
    assert await plane.send("1") == 202
    assert await plane.send("2", type="order.paid") == 202
    await eventually(lambda: iris.ids == ["1"] and len(plane.outcomes) == 1)


async def test_a_trigger_without_its_broker_names_it_and_recovers_when_it_appears(
    plane: Plane,
) -> None:
    plane.trigger("t", {"uri": "http://sink.localhost/"})
    plane.start()
    await eventually(lambda: ready(plane, TRIGGERS, "t") == "False")
    assert conditions(plane.get(TRIGGERS, "t"))["BrokerReady"] == (
        "False",
        "BrokerDoesNotExist",
        'broker "default" not found in namespace "default"; create it with '
        "`knserve broker create default -n default`",
    )
    assert conditions(plane.get(TRIGGERS, "t"))["Ready"][1] == "BrokerDoesNotExist"
    plane.broker()
    await eventually(lambda: ready(plane, TRIGGERS, "t") == "True")


async def test_a_trigger_to_a_missing_service_keeps_events_until_the_service_exists(
    plane: Plane,
) -> None:
    plane.broker()
    plane.trigger("predict", KSVC)
    plane.start()
    await eventually(lambda: ready(plane, TRIGGERS, "predict") == "False")
    assert conditions(plane.get(TRIGGERS, "predict"))["SubscriberResolved"] == (
        "False",
        "NotFound",
        'service "iris" not found in namespace "default"',
    )
    assert await plane.send("early") == 202  # accepted while the trigger cannot deliver
    iris = plane.service("iris", "http://iris.default.localhost")
    await eventually(lambda: iris.ids == ["early"])
    assert ready(plane, TRIGGERS, "predict") == "True"


async def test_a_service_without_a_url_yet_is_not_ready_as_a_subscriber(plane: Plane) -> None:
    plane.broker()
    plane.service("iris")  # created, no status yet
    plane.trigger("predict", KSVC)
    plane.start()
    await eventually(lambda: ready(plane, TRIGGERS, "predict") == "False")
    _, reason, message = conditions(plane.get(TRIGGERS, "predict"))["SubscriberResolved"]
    assert (reason, message) == (
        "NotReady",
        'service "iris" in namespace "default" has no URL yet (not ready)',
    )


@pytest.mark.parametrize(
    ("subscriber", "reason", "message"),
    [
        pytest.param(
            {"uri": "/events"},
            "InvalidURI",
            'spec.subscriber.uri "/events" is not an absolute http(s) URL',
            id="relative-uri",
        ),
        pytest.param(
            {"ref": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}},
            "UnsupportedReference",
            "spec.subscriber.ref is a apps/v1 Deployment, which the local plane cannot address; "
            "refer to one of: serving.knative.dev/v1 Service, eventing.knative.dev/v1 Broker, "
            "serving.kserve.io/v1beta1 InferenceService, or give a uri",
            id="unsupported-kind",
        ),
        pytest.param({}, "SubscriberNotSpecified", "spec.subscriber needs a ref", id="empty"),
    ],
)
async def test_a_subscriber_that_cannot_be_resolved_says_why(
    plane: Plane, subscriber: dict[str, Any], reason: str, message: str
) -> None:
    plane.broker()
    plane.trigger("t", subscriber)
    plane.start()
    await eventually(lambda: ready(plane, TRIGGERS, "t") == "False")
    _, got_reason, got_message = conditions(plane.get(TRIGGERS, "t"))["SubscriberResolved"]
    assert got_reason == reason and got_message is not None and got_message.startswith(message)


async def test_an_invalid_filter_makes_the_trigger_not_ready_with_the_filters_message(
    plane: Plane,
) -> None:
    plane.broker()
    plane.trigger("t", {"uri": "http://sink.localhost/"}, filters=[{"any": []}])
    plane.start()
    await eventually(lambda: ready(plane, TRIGGERS, "t") == "False")
    ready_cond = conditions(plane.get(TRIGGERS, "t"))["Ready"]
    assert ready_cond[1] == "InvalidFilter"
    assert ready_cond[2] is not None and ready_cond[2].startswith("spec.filters[0].any: ")
    assert conditions(plane.get(TRIGGERS, "t"))["SubscriptionReady"] == ("False", *ready_cond[1:])


async def test_a_triggers_delivery_replaces_the_brokers_whole(plane: Plane) -> None:
    failing, dead = Recorder(503), Recorder()
    plane.hosts.update({"failing.localhost": failing, "dlq.localhost": dead})
    plane.broker(
        delivery={
            "retry": 2,
            "backoffDelay": "PT0.01S",
            "deadLetterSink": {"uri": "http://dlq.localhost/"},
        }
    )
    plane.trigger("inherits", {"uri": "http://failing.localhost/a"})
    plane.trigger("own", {"uri": "http://failing.localhost/b"}, delivery={"retry": 0})
    plane.start()
    await eventually(
        lambda: ready(plane, TRIGGERS, "inherits") == ready(plane, TRIGGERS, "own") == "True"
    )
    assert plane.get(TRIGGERS, "inherits")["status"]["deadLetterSinkUri"] == "http://dlq.localhost/"
    assert "deadLetterSinkUri" not in plane.get(TRIGGERS, "own")["status"]
    assert await plane.send("1") == 202
    await eventually(lambda: len(plane.outcomes) == 4)
    by_trigger = {
        key.split("/")[1]: [o.attempts for o in plane.outcomes if o.trigger == key]
        for key in {o.trigger for o in plane.outcomes}
    }
    assert by_trigger == {"inherits": [1, 2, 3], "own": [1]}
    assert dead.ids == ["1"]  # only the trigger that inherited the broker's sink had one


async def test_deleting_a_trigger_stops_its_loop_and_forgets_its_place(plane: Plane) -> None:
    plane.broker()
    trigger = plane.trigger("t", {"uri": "http://sink.localhost/"})
    plane.start()
    await eventually(lambda: ready(plane, TRIGGERS, "t") == "True")
    key = trigger_key(trigger)
    assert plane.dispatcher.running(key) and key in plane.log.trigger_keys()
    plane.store.delete(TRIGGERS, "default", "t")
    await eventually(lambda: key not in plane.log.trigger_keys())
    assert not plane.dispatcher.running(key)


async def test_deleting_a_broker_stops_its_triggers_and_they_say_so(plane: Plane) -> None:
    plane.broker()
    trigger = plane.trigger("t", {"uri": "http://sink.localhost/"})
    plane.start()
    await eventually(lambda: ready(plane, TRIGGERS, "t") == "True")
    plane.store.delete(BROKERS, "default", "default")
    await eventually(lambda: ready(plane, TRIGGERS, "t") == "False")
    assert not plane.dispatcher.running(trigger_key(trigger))
    assert plane.log.trigger_keys() == []
    assert not plane.controller.broker_exists("default", "default")
    assert await plane.send("1") == 404


async def test_triggers_deleted_while_the_plane_was_down_are_forgotten_at_start(
    plane: Plane,
) -> None:
    plane.broker()
    kept = trigger_key(plane.trigger("kept", {"uri": "http://sink.localhost/"}))
    plane.log.add_trigger("default/gone/default/0000", "default", "default")
    plane.log.add_trigger(kept, "default", "default")
    plane.start()
    await eventually(lambda: ready(plane, TRIGGERS, "kept") == "True")
    assert plane.log.trigger_keys() == [kept]


async def test_a_reply_from_a_service_reaches_the_next_trigger(plane: Plane) -> None:
    """broker → trigger (request) → predictor → reply → trigger (response) → sink."""

    async def predictor(scope: Any, receive: Any, send: Any) -> None:
        await read_body(receive)
        headers = [
            (b"ce-specversion", b"1.0"),
            (b"ce-id", b"answer-1"),
            (b"ce-source", b"/iris"),
            (b"ce-type", b"io.kserve.inference.response"),
            (b"content-type", b"application/json"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"predictions": [2]}'})

    plane.service("iris", "http://iris.default.localhost")
    plane.hosts["iris.default.localhost"] = predictor  # type: ignore[assignment]
    sink = Recorder()
    plane.hosts["sink.localhost"] = sink
    plane.broker()
    plane.trigger("predict", KSVC, filter={"attributes": {"type": "io.kserve.inference.request"}})
    plane.trigger(
        "collect",
        {"uri": "http://sink.localhost/"},
        filter={"attributes": {"type": "io.kserve.inference.response"}},
    )
    plane.start()
    await eventually(
        lambda: ready(plane, TRIGGERS, "predict") == ready(plane, TRIGGERS, "collect") == "True"
    )
    assert await plane.send("q-1", type="io.kserve.inference.request") == 202
    await eventually(lambda: sink.ids == ["answer-1"])


# ---- what a reconciler cannot handle -----------------------------------------------------------


async def test_a_reconcile_that_fails_writes_why_onto_the_broker_and_the_trigger(
    plane: Plane,
) -> None:
    # Objects stored before admission checked their shape (as an older knserve stored them),
    # written straight into the store: reconciling them fails where no rule expected it.
    def stale(spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": "stale", "namespace": "default"}, "spec": spec}

    plane.store.create(BROKERS, stale("default"), validate=False)
    plane.store.create(
        TRIGGERS,
        stale({"broker": "default", "subscriber": KSVC, "filter": "type=order.created"}),
        validate=False,
    )
    plane.broker()
    iris = plane.service("iris", "http://iris.default.localhost")
    plane.trigger("fine", KSVC)
    plane.start()
    for kind in (BROKERS, TRIGGERS):
        await eventually(lambda kind=kind: ready(plane, kind, "stale") == "False")
        failed = plane.get(kind, "stale")
        assert conditions(failed)["Ready"] == (
            "False",
            "InternalError",
            "'str' object has no attribute 'get'",
        )
        assert failed["status"]["observedGeneration"] == failed["metadata"]["generation"]
    # one object that fails stalls no other
    await eventually(lambda: ready(plane, TRIGGERS, "fine") == "True")
    assert await plane.send("1") == 202
    await eventually(lambda: iris.ids == ["1"])
