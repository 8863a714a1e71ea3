"""At least once across restarts: events accepted, in flight or waiting for a retry when the
dispatcher's process stopped are delivered after it starts again on the same event log.
"""

from __future__ import annotations

from dispatcher_harness import Answer, Harness, Subscriber

from knserve.eventing.backoff import Action

# ---- at least once across restarts ---------------------------------------------------------------


async def test_events_accepted_before_a_restart_are_delivered_after_it(h: Harness) -> None:
    await h.dispatcher.pause_trigger("t", "default", "default")
    for i in range(5):
        await h.send(str(i))
    await h.close()
    h.open()  # a new log connection and a new dispatcher on the same file
    subscriber = Subscriber()
    h.trigger("t", h.subscriber("sub", subscriber))
    await subscriber.wait_for(5)
    assert sorted(subscriber.ids()) == ["0", "1", "2", "3", "4"]


async def test_events_in_flight_when_the_process_died_are_delivered_after_a_restart(
    h: Harness,
) -> None:
    await h.dispatcher.pause_trigger("t", "default", "default")
    for i in range(3):
        await h.send(str(i))
    claimed = h.log.pending("t", 10)  # a dispatcher took them, then the process was killed
    assert len(claimed) == 3
    h.log.close()  # no mark_*: the claims die with the process
    await h.to_ingress.aclose()
    h.open()
    subscriber = Subscriber()
    h.trigger("t", h.subscriber("sub", subscriber))
    await subscriber.wait_for(3)
    assert sorted(subscriber.ids()) == ["0", "1", "2"]


async def test_a_retry_scheduled_before_a_restart_happens_after_it_on_time(h: Harness) -> None:
    flaky = Subscriber(Answer(503))
    h.trigger(
        "t",
        h.subscriber("flaky", flaky),
        delivery={"retry": 2, "backoffDelay": "PT0.1S", "backoffPolicy": "linear"},
    )
    await h.send("1")
    [retry] = await h.wait_outcomes(1)
    assert retry.action is Action.RETRY
    failed_at = flaky.received[0].at
    await h.close()
    h.open()
    h.outcomes.clear()
    h.trigger(
        "t",
        h.subscriber("flaky", flaky),
        delivery={"retry": 2, "backoffDelay": "PT0.1S", "backoffPolicy": "linear"},
    )
    [delivered] = await h.wait_outcomes(1)
    assert (delivered.action, delivered.attempts) == (Action.DELIVERED, 2)  # the count survived
    assert flaky.received[1].at - failed_at >= 0.1
