"""A `kill -9` of a real `knserve up` in the middle of a stream of events: after the restart on
the same data dir, every event the broker accepted is delivered at least once.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from pathlib import Path

import httptools
import pytest
from broker_fixtures import BROKER, Sink, broker, ready, trigger
from net_fixtures import ServerProcess
from plane_fixtures import LocalPlane

pytestmark = pytest.mark.slow


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
