"""For the dispatcher's tests: a broker in one process (event log, ingress, dispatcher) whose
subscribers are ASGI apps addressed by host name.

- `Subscriber` records what it receives, answers from a script (or builds a reply), and can hold
  requests behind a gate; `Answer` is one of its answers, `reply_event` one that is a CloudEvent.
- `Harness` wires the broker together: `subscriber` names one, `trigger` programs the dispatcher,
  `send` posts an event through the real ingress, `wait_outcomes` awaits what the dispatcher
  decided, `stored` reads what the event log kept. `tests/eventing/conftest.py` gives it to a
  test as the `h` fixture, and an unreachable subscriber's URL as `down_url`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from knserve.eventing.backoff import DeliverySpec
from knserve.eventing.dispatcher import Dispatcher, Outcome
from knserve.eventing.eventlog import EventLog
from knserve.eventing.filters import compile_filters
from knserve.eventing.ingress import Ingress
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
