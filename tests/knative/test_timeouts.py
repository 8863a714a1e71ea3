"""Which of a revision's request timeouts has passed, on a clock the test sets (sub-second steps)."""

from __future__ import annotations

import pytest

from knserve.knative.activator.timeouts import RequestTimeouts


def test_timeout_seconds_bounds_the_whole_request_started_or_not() -> None:
    timeouts = RequestTimeouts(total=1.0)
    assert timeouts.first == 1.0
    assert timeouts.expired(10.0, 10.9, started=False, last_byte=None) == (None, 11.0)
    assert timeouts.expired(10.0, 11.0, started=False, last_byte=None)[0] == "timeoutSeconds"
    # A response that has begun, bytes still flowing, is bounded all the same.
    assert timeouts.expired(10.0, 11.0, started=True, last_byte=10.999)[0] == "timeoutSeconds"


def test_response_start_bounds_only_the_wait_for_the_head() -> None:
    timeouts = RequestTimeouts(total=2.0, response_start=0.5)
    assert timeouts.first == 0.5
    assert timeouts.expired(0.0, 0.4, started=False, last_byte=None) == (None, 0.5)
    assert timeouts.expired(0.0, 0.5, started=False, last_byte=None)[0] == (
        "responseStartTimeoutSeconds"
    )
    # Started in time: only timeoutSeconds is left, however long the body takes.
    assert timeouts.expired(0.0, 1.5, started=True, last_byte=0.3) == (None, 2.0)


@pytest.mark.parametrize("response_start", [0.0, 2.0, 3.0])
def test_a_response_start_not_below_the_total_adds_nothing(response_start: float) -> None:
    timeouts = RequestTimeouts(total=2.0, response_start=response_start)
    assert timeouts.first == 2.0
    assert timeouts.expired(0.0, 1.9, started=False, last_byte=None) == (None, 2.0)
    assert timeouts.expired(0.0, 2.0, started=False, last_byte=None)[0] == "timeoutSeconds"


def test_idle_counts_from_arrival_then_from_each_response_read() -> None:
    timeouts = RequestTimeouts(total=10.0, idle=0.5)
    assert timeouts.first == 0.5
    # No byte yet: the gap runs from arrival, as Knative's lastWriteTime starts at zero.
    assert timeouts.expired(0.0, 0.5, started=False, last_byte=None)[0] == "idleTimeoutSeconds"
    # Bytes keep coming: the next look is half a second after the latest.
    assert timeouts.expired(0.0, 0.5, started=True, last_byte=0.3) == (None, 0.8)
    assert timeouts.expired(0.0, 3.0, started=True, last_byte=2.6) == (None, 3.1)
    assert timeouts.expired(0.0, 3.1, started=True, last_byte=2.6)[0] == "idleTimeoutSeconds"


def test_a_timer_a_little_early_still_counts() -> None:
    timeouts = RequestTimeouts(total=1.0)
    # uvloop rounds timers to milliseconds: one firing a hair early must not re-arm for nothing.
    assert timeouts.expired(0.0, 0.9995, started=False, last_byte=None)[0] == "timeoutSeconds"
