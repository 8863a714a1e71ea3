"""The bound on a revision's queue, as Knative's queue-proxy and activator breakers bound theirs."""

from __future__ import annotations

import pytest

from knserve.knative.activator.breaker import (
    ACTIVATOR_QUEUE_DEPTH,
    QUEUE_FULL_BODY,
    queue_depth,
    queue_full_message,
)


@pytest.mark.parametrize(
    ("concurrency", "ready", "depth"),
    [
        (1, 1, 10),  # queue-proxy: 10 x containerConcurrency per replica
        (1, 3, 30),
        (4, 2, 80),
        (100, 10, 10000),  # never above the activator's breakerQueueDepth
        (1000, 5, ACTIVATOR_QUEUE_DEPTH),
        (0, 4, ACTIVATOR_QUEUE_DEPTH),  # containerConcurrency 0: no queue-proxy breaker
        (3, 0, ACTIVATOR_QUEUE_DEPTH),  # no replica ready: only the activator holds requests
        (0, 0, ACTIVATOR_QUEUE_DEPTH),
    ],
)
def test_queue_depth_is_the_queue_proxies_within_the_activators(
    concurrency: int, ready: int, depth: int
) -> None:
    assert queue_depth(concurrency, ready) == depth


def test_the_activators_depth_can_be_given() -> None:
    assert queue_depth(0, 0, activator_depth=7) == 7
    assert queue_depth(1, 1, activator_depth=7) == 7


def test_the_message_starts_with_knatives_words_and_says_which_bound() -> None:
    message = queue_full_message("default", "iris-1", 10, 1, 1)
    assert message.startswith(QUEUE_FULL_BODY + ": Revision default/iris-1 is overloaded")
    assert "10 requests already wait for 1 ready replica(s) at containerConcurrency=1" in message
    held = queue_full_message("default", "iris-1", 10000, 0, 0)
    assert "the activator's queue depth per revision" in held
    assert "\n" not in message + held
