"""Triggers under the dispatcher: filters select their events, brokers and triggers are isolated
from one another, at most 16 deliveries are in flight per trigger, and a trigger can be removed,
changed or paused. Subscribers are ASGI apps (tests/support/dispatcher_harness.py).
"""

from __future__ import annotations

import asyncio

from dispatcher_harness import Harness, Subscriber

# ---- filters and isolation -----------------------------------------------------------------------


async def test_a_trigger_gets_only_the_events_its_filters_select(h: Harness) -> None:
    orders, eu = Subscriber(), Subscriber()
    h.trigger("orders", h.subscriber("orders", orders), attributes={"type": "order.created"})
    h.trigger("eu", h.subscriber("eu", eu), filters=[{"prefix": {"region": "eu-"}}])
    await h.send("1", type="order.created", region="us-east")
    await h.send("2", type="order.paid", region="eu-west")
    await h.send("3", type="order.created", region="eu-north")
    await orders.wait_for(2)
    await eu.wait_for(2)
    await h.wait_outcomes(4)
    assert sorted(orders.ids()) == ["1", "3"] and sorted(eu.ids()) == ["2", "3"]


async def test_events_of_another_broker_are_not_delivered(h: Harness) -> None:
    mine, theirs = Subscriber(), Subscriber()
    h.trigger("mine", h.subscriber("mine", mine))
    h.trigger("theirs", h.subscriber("theirs", theirs), broker="other")
    await h.send("1", broker="other")
    await h.send("2")
    await mine.wait_for(1)
    await theirs.wait_for(1)
    assert (mine.ids(), theirs.ids()) == (["2"], ["1"])


async def test_one_triggers_dead_subscriber_does_not_hold_up_another(
    h: Harness, down_url: str
) -> None:
    healthy = Subscriber()
    h.trigger(
        "stuck",
        down_url,
        delivery={"retry": 1000, "backoffDelay": "PT0.05S", "backoffPolicy": "linear"},
    )
    h.trigger("fine", h.subscriber("fine", healthy))
    for i in range(40):
        await h.send(str(i))
    await healthy.wait_for(40)
    assert sorted(healthy.ids(), key=int) == [str(i) for i in range(40)]
    assert h.log.backlog("stuck") == 40  # still trying, none lost


async def test_at_most_16_deliveries_are_in_flight_per_trigger(h: Harness) -> None:
    slow = Subscriber()
    slow.gate = asyncio.Event()
    h.trigger("t", h.subscriber("slow", slow))
    for i in range(40):
        await h.send(str(i))
    await slow.wait_for(16)
    for _ in range(50):  # let the dispatcher do anything it would do
        await asyncio.sleep(0)
    assert len(slow.received) == 16
    slow.gate.set()
    await slow.wait_for(40)
    await h.wait_outcomes(40)
    assert slow.max_active == 16 and sorted(set(slow.ids()), key=int) == [str(i) for i in range(40)]


async def test_a_removed_trigger_stops_and_forgets_its_events(h: Harness) -> None:
    slow = Subscriber()
    slow.gate = asyncio.Event()
    h.trigger("t", h.subscriber("slow", slow))
    await h.send("1")
    await slow.wait_for(1)
    await h.dispatcher.remove_trigger("t")
    assert "t" not in h.log.trigger_keys()
    await h.send("2")
    assert h.dispatcher.keys("default", "default") == []
    assert not h.dispatcher.running("t")


async def test_a_changed_subscriber_url_takes_effect(h: Harness) -> None:
    old, new = Subscriber(), Subscriber()
    h.trigger("t", h.subscriber("old", old))
    await h.send("1")
    await old.wait_for(1)
    h.trigger("t", h.subscriber("new", new))
    await h.send("2")
    await new.wait_for(1)
    assert (old.ids(), new.ids()) == (["1"], ["2"])


async def test_a_paused_trigger_keeps_its_events_until_it_runs_again(h: Harness) -> None:
    subscriber = Subscriber()
    await h.dispatcher.pause_trigger("t", "default", "default")
    await h.send("1")
    await h.send("2")
    assert h.log.backlog("t") == 2 and not h.dispatcher.running("t")
    h.trigger("t", h.subscriber("sub", subscriber))
    await subscriber.wait_for(2)
    assert sorted(subscriber.ids()) == ["1", "2"]
