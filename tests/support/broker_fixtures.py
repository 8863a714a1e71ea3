"""For the eventing plane's end-to-end tests: a recording CloudEvents subscriber and the
Broker and Trigger documents, applied and sent to through a real `knserve up`.

- `Sink` is a keep-alive HTTP/1.1 server on a loopback port that records every request and
  answers by path (fail twice, always fail, refuse, reply, or hold its answers until released);
  `tests/eventing/conftest.py` gives it to a test as the `sink` fixture.
- `broker`, `trigger` spell the objects; `ready` applies them and waits until they say Ready;
  `send` posts one binary-mode event into the broker and expects its 202.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools
import httpx
import orjson
import pytest
from plane_fixtures import LocalPlane, apply

BROKER = "default"


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
