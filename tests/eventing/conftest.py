"""Fixtures for the eventing tests: the dispatcher's in-process broker (`h`) and a subscriber
URL nobody listens on (`down_url`); the recording CloudEvents subscriber of the plane's tests
(`sink`). A module's own fixture of the same name (test_ingress.py's `h`) wins over these."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from broker_fixtures import Sink
from dispatcher_harness import Harness
from net_fixtures import free_port


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path / "events.db")
    yield harness
    await harness.close()
    await harness.client.aclose()


@pytest.fixture
def down_url() -> str:
    return f"http://127.0.0.1:{free_port()}/events"
