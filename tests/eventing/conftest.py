"""Fixtures for the eventing tests: the recording CloudEvents subscriber of the plane's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from broker_fixtures import Sink


@pytest.fixture
def sink() -> Iterator[Sink]:
    server = Sink()
    yield server
    server.close()

