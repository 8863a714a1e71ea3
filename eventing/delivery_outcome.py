"""What the dispatcher reports of its deliveries: each claimed event's `Outcome` (for metrics and
tests, through the dispatcher's ``on_outcome``) and each trigger's running `TriggerStats`."""

from __future__ import annotations

from dataclasses import dataclass

from knserve.eventing.backoff import Action


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed event (for metrics and tests, through ``on_outcome``)."""

    trigger: str
    seq: int
    event_id: str
    action: Action  # DELIVERED, RETRY (with the delay) or DEAD_LETTER
    status: int | None  # the subscriber's status; None when there was no answer
    attempts: int  # attempts made so far, this one included
    delay: float = 0.0  # seconds until the retry (RETRY only)
    replied: bool = False  # a reply event went back into the broker
    dead_lettered: bool = False  # DEAD_LETTER: the sink took it (False: dropped)


@dataclass
class TriggerStats:
    """Counters for one trigger since this dispatcher started it."""

    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0  # given up on, and the dead-letter sink took it
    dropped: int = 0  # given up on with no dead-letter sink, or one that kept failing
    replies: int = 0  # reply events put back into the broker
    replies_refused: int = 0  # reply events the broker refused (TTL spent, malformed)
