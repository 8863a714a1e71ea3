"""Delivery: from the event log to each Trigger's subscriber, at least once, with retries.

One asyncio task per Trigger runs a loop over the :class:`~knserve.eventing.eventlog.EventLog`:
:meth:`~EventLog.pending` claims what is due (new events that pass the trigger's filter, then
retries whose time has come) up to the trigger's free slots, each claimed event is POSTed to the
subscriber by a task of its own, and the loop sleeps on an :class:`asyncio.Event` until something
changes. It never polls: the ingress's ``on_accepted`` calls :meth:`Dispatcher.wake` for the
broker, a finished delivery frees a slot and wakes its loop, and a waiting retry is a timeout on
the loop's wait, computed from :meth:`~EventLog.next_due` (so retries scheduled before a restart
fire on time after it). Per trigger at most ``concurrency`` deliveries are in flight (16 by
default); order is not kept, as Knative keeps none, and one trigger's slow or dead subscriber
never holds up another trigger, because each trigger has its own slots.

One attempt and what follows it:

* the event goes out in binary mode (structured if ``spec.delivery.format`` is ``json``) without
  ``knativebrokerttl``, which is the broker's business, with ``Prefer: reply`` and the event's
  trace (:mod:`knserve.eventing.delivery_trace`);
* :meth:`DeliverySpec.decide <knserve.eventing.backoff.DeliverySpec.decide>` reads the answer: a
  2xx is delivered; a retryable failure is marked in the log with its due time (durable, so a
  restart keeps the back-off); anything else, or the last retry, goes to the dead-letter sink;
* a 2xx that carries a CloudEvent (binary or structured, or a batch) is a reply: it gets the
  delivered event's TTL (which the ingress then decrements, so a reply loop dies) and goes back
  into the trigger's broker through ``reply_to`` (``Ingress.accept``) *before* the event is marked
  delivered -- a crash in between delivers again rather than losing the reply. A reply the
  ingress refuses (TTL spent, malformed) is logged and counted, and the delivery stands;
* the dead-letter sink gets the event plus Knative's extensions: ``knativeerrordest`` (the
  subscriber), ``knativeerrorcode`` (its status; 500 when there was no answer, as Knative's
  dispatcher reports it) and ``knativeerrordata`` (the answer's body, cut to 1,024 bytes, in
  base64). It is tried as often as the delivery allows; with no sink, or one that keeps failing,
  the event is dropped and counted -- never retried forever.

At least once: an event is removed from a trigger's queue only after the subscriber's 2xx (or the
dead-letter decision); whatever was in flight when the process died is claimed again when the log
is reopened, and :meth:`Dispatcher.close` releases what it interrupted.

The POST itself, its encoding, timeout and answer, is :mod:`~knserve.eventing.message_sender`'s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from knserve.eventing import delivery_trace
from knserve.eventing.backoff import Action, DeliverySpec
from knserve.eventing.delivery_outcome import Outcome, TriggerStats
from knserve.eventing.encoding import is_cloudevent
from knserve.eventing.eventlog import EventLog, StoredEvent
from knserve.eventing.filters import Predicate
from knserve.eventing.ingress import MAX_BODY_BYTES, TTL, Rejected, decode
from knserve.eventing.message_sender import Answer, LeanSender, MessageSender
from knserve.runtime.tracing import tracer

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "ERROR_CODE",
    "ERROR_DATA",
    "ERROR_DATA_MAX_BYTES",
    "ERROR_DEST",
    "Dispatcher",
    "Outcome",
    "ReplyTo",
    "TriggerStats",
]

logger = logging.getLogger(__name__)

ReplyTo = Callable[[str, str, Sequence[dict[str, Any]]], Any]
"""Where replies go: ``(namespace, broker, events)``, i.e. ``Ingress.accept``."""

DEFAULT_CONCURRENCY = 16  # deliveries in flight per trigger: enough to hide a subscriber's latency
# Seconds per attempt when spec.delivery sets no timeout: the gateway's default revision
# timeoutSeconds (Knative's 300 s), so a slow predictor's own 504 comes back before we give up.
DEFAULT_TIMEOUT = 300.0
ERROR_DEST, ERROR_CODE, ERROR_DATA = "knativeerrordest", "knativeerrorcode", "knativeerrordata"
ERROR_DATA_MAX_BYTES = 1024  # Knative's cap on the failed body carried in knativeerrordata
COMPACT_INTERVAL = 60.0  # seconds between log compactions: deletes fully delivered events
CLAIM_BATCH = 4  # events claimed per log read, in multiples of the concurrency
RECOVERY_DELAY = 1.0  # seconds before a loop tries again after an unexpected error (disk full…)


@dataclass(frozen=True)
class _Subscription:
    namespace: str
    broker: str
    subscriber_url: str
    predicate: Predicate
    delivery: DeliverySpec
    dead_letter_url: str | None


@dataclass
class _Trigger:
    key: str
    namespace: str
    broker: str
    subscription: _Subscription | None = None  # None: paused (registered, not delivering)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    loop: asyncio.Task[None] | None = None
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    claimed: deque[StoredEvent] = field(default_factory=deque)  # claimed in the log, not yet sent
    stats: TriggerStats = field(default_factory=TriggerStats)


class Dispatcher:
    """Runs each Trigger's delivery loop (see the module docstring).

    ``client`` sends every request (the plane's client routes ``*.localhost`` hosts through the
    gateway) that ``sender``, a :class:`LeanSender`, does not take; ``reply_to`` receives replies
    (``Ingress.accept``; may be set after construction);
    ``clock`` must be the log's (Unix seconds), as due times are compared in the log.
    """

    def __init__(
        self,
        log: EventLog,
        client: httpx.AsyncClient,
        *,
        reply_to: ReplyTo | None = None,
        clock: Callable[[], float] | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        default_timeout: float = DEFAULT_TIMEOUT,
        on_outcome: Callable[[Outcome], None] | None = None,
        compact_interval: float = COMPACT_INTERVAL,
        sender: LeanSender | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency is {concurrency}; it must be 1 or more")
        self.log, self.reply_to = log, reply_to
        self.clock = clock or log.clock
        # plain http:// deliveries through ``sender``; None: all through ``client``
        self.sender = MessageSender(client, sender, self.clock, default_timeout)
        self.concurrency = concurrency
        self.on_outcome, self.compact_interval = on_outcome, compact_interval
        self.tracer = tracer("knserve-broker")  # None unless OTEL_* variables ask for traces
        self._triggers: dict[str, _Trigger] = {}
        self._by_broker: dict[tuple[str, str], set[str]] = {}
        self._housekeeping: asyncio.Task[None] | None = None

    # ---- configuration (the controller) --------------------------------------------------------

    def set_trigger(
        self,
        key: str,
        namespace: str,
        broker: str,
        subscriber_url: str,
        predicate: Predicate,
        delivery: DeliverySpec,
        dead_letter_url: str | None = None,
    ) -> None:
        """Deliver ``broker``'s events that pass ``predicate`` to ``subscriber_url``; call again
        with new values to change them (deliveries in flight finish as they started). A key new
        to the log starts at the log's current end; a known one resumes where it was."""
        trigger = self._register(key, namespace, broker)
        trigger.subscription = _Subscription(
            namespace, broker, subscriber_url, _guarded(key, predicate), delivery, dead_letter_url
        )
        if trigger.loop is None:
            trigger.loop = asyncio.create_task(self._run(trigger), name=f"trigger {key}")
            trigger.loop.add_done_callback(_log_unexpected_exit)
        trigger.wakeup.set()
        self._start_housekeeping()

    async def pause_trigger(self, key: str, namespace: str, broker: str) -> None:
        """Keep the trigger's place in the log but deliver nothing (its subscriber cannot be
        resolved, its filter is invalid): events accepted meanwhile wait for it."""
        trigger = self._register(key, namespace, broker)
        trigger.subscription = None
        await self._stop(trigger)
        self.log.flush()
        self.log.release(key)

    async def remove_trigger(self, key: str) -> None:
        """Stop the trigger and forget it and its undelivered events (the Trigger was deleted)."""
        trigger = self._triggers.pop(key, None)
        if trigger is not None:
            await self._stop(trigger)
            peers = self._by_broker.get((trigger.namespace, trigger.broker), set())
            peers.discard(key)
            if not peers:
                self._by_broker.pop((trigger.namespace, trigger.broker), None)
        self.log.remove_trigger(key)

    def wake(self, namespace: str, broker: str) -> None:
        """New events for ``broker`` (wire to ``Ingress(on_accepted=...)``)."""
        for key in self._by_broker.get((namespace, broker), ()):
            self._triggers[key].wakeup.set()

    def keys(self, namespace: str, broker: str) -> list[str]:
        """The triggers of a broker this dispatcher knows, running or paused."""
        return sorted(self._by_broker.get((namespace, broker), ()))

    def running(self, key: str) -> bool:
        trigger = self._triggers.get(key)
        return trigger is not None and trigger.subscription is not None

    def stats(self, key: str) -> TriggerStats:
        trigger = self._triggers.get(key)
        return replace(trigger.stats) if trigger is not None else TriggerStats()

    def broker_of(self, key: str) -> str | None:
        """The broker a known trigger takes its events from."""
        trigger = self._triggers.get(key)
        return trigger.broker if trigger is not None else None

    async def close(self) -> None:
        """Stop every loop and delivery; what they had claimed is due again (for the next run)."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        for trigger in list(self._triggers.values()):
            await self._stop(trigger)
        self.log.flush()  # before the release, or those would be claimed again
        for trigger in self._triggers.values():
            self.log.release(trigger.key)
        self.sender.close()

    def _register(self, key: str, namespace: str, broker: str) -> _Trigger:
        trigger = self._triggers.get(key)
        if trigger is not None:
            if (trigger.namespace, trigger.broker) != (namespace, broker):
                raise ValueError(
                    f'trigger "{key}" delivers from broker {trigger.namespace}/{trigger.broker}, '
                    f"not {namespace}/{broker}; remove it first (a trigger's broker cannot change)"
                )
            return trigger
        self.log.add_trigger(key, namespace, broker)
        # Claims left by an earlier dispatcher on this log died with it: due again now.
        self.log.release(key)
        trigger = self._triggers[key] = _Trigger(key, namespace, broker)
        self._by_broker.setdefault((namespace, broker), set()).add(key)
        return trigger

    async def _stop(self, trigger: _Trigger) -> None:
        tasks = [*trigger.inflight, *([trigger.loop] if trigger.loop else [])]
        trigger.loop = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        trigger.inflight.clear()
        trigger.claimed.clear()  # still claimed in the log: released, or forgotten with it

    def _start_housekeeping(self) -> None:
        if self._housekeeping is None or self._housekeeping.done():
            self._housekeeping = asyncio.create_task(self._compact(), name="eventlog compaction")
            self._housekeeping.add_done_callback(_log_unexpected_exit)

    async def _compact(self) -> None:
        while True:
            await asyncio.sleep(self.compact_interval)
            try:
                removed = self.log.compact()
            except Exception:
                logger.exception("compacting the event log failed; trying again later")
            else:
                if removed:
                    logger.debug("event log compaction removed %d delivered events", removed)

    # ---- the loop ------------------------------------------------------------------------------

    async def _run(self, trigger: _Trigger) -> None:
        while True:
            trigger.wakeup.clear()
            try:
                timeout = self._claim(trigger)
            except Exception:
                logger.exception("trigger %s: claiming events failed; trying again", trigger.key)
                timeout = RECOVERY_DELAY
            if timeout is None:
                await trigger.wakeup.wait()
            elif timeout > 0:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that lands
                # as the wait ends (a delivery finishing while close() cancels), and the loop
                # would then outlive close() forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await trigger.wakeup.wait()
            else:
                await asyncio.sleep(0)  # due already: go round, letting others run

    def _claim(self, trigger: _Trigger) -> float | None:
        """Start deliveries for what is due; returns how long to wait for the next due retry
        (None: until woken).

        Events are claimed from the log a batch at a time (``CLAIM_BATCH`` × concurrency) and
        started as slots free up, so that a busy trigger reads the log once per batch rather than
        once per event; claimed events are in flight in the log, so a crash loses none.
        """
        subscription = trigger.subscription
        free = self.concurrency - len(trigger.inflight)
        if subscription is None or free <= 0:
            return None  # a delivery that finishes wakes the loop
        exhausted = False
        if not trigger.claimed:
            batch = self.concurrency * CLAIM_BATCH
            events = self.log.pending(
                trigger.key, batch, matches=subscription.predicate, defer=True
            )
            trigger.claimed.extend(events)
            exhausted = len(events) < batch
        while trigger.claimed and len(trigger.inflight) < self.concurrency:
            event = trigger.claimed.popleft()
            # unnamed: a name formatted per delivery was a visible cost with 100 triggers
            task = asyncio.create_task(self._deliver(trigger, subscription, event))
            trigger.inflight.add(task)
            task.add_done_callback(functools.partial(self._finished, trigger))
        if trigger.claimed:
            return None
        if not exhausted:
            return 0.0  # the batch fitted in the free slots: claim more now
        due = self.log.next_due(trigger.key)
        return None if due is None else max(0.0, due - self.clock())

    def _finished(self, trigger: _Trigger, task: asyncio.Task[None]) -> None:
        trigger.inflight.discard(task)
        trigger.wakeup.set()
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "trigger %s: a delivery failed unexpectedly; the event is due again after a restart",
                trigger.key,
                exc_info=task.exception(),
            )

    # ---- one event -----------------------------------------------------------------------------

    async def _deliver(self, trigger: _Trigger, sub: _Subscription, event: StoredEvent) -> None:
        attributes = {k: v for k, v in event.attributes.items() if k != TTL}
        attempt = delivery_trace.begin(
            self.tracer, attributes, trigger.key, sub.subscriber_url, event.attempts + 1
        )
        answer = await self.sender.send(
            sub.subscriber_url, attributes, event.data, sub.delivery, attempt.headers
        )
        attempt.end(answer)
        status, replied = answer.status, False
        if status is not None and 200 <= status < 300 and is_cloudevent(answer.headers):
            try:
                replied = self._reply(trigger, sub, event, answer)
            except Exception as exc:  # the reply could not be stored: the delivery did not finish
                logger.warning("trigger %s: storing the reply failed: %s", trigger.key, exc)
                answer = Answer(None, f"reply could not be stored: {exc}".encode(), {})
                status = None
        decision = sub.delivery.decide(event.attempts, status, answer.retry_after)
        attempts = event.attempts + 1
        dead_lettered = False
        if decision.action is Action.DELIVERED:
            # Committed with the other writes of this loop turn; until then the event stays
            # claimed, so nothing claims it again (and a crash delivers it again).
            self.log.mark_delivered(trigger.key, event.seq, defer=True)
            trigger.stats.delivered += 1
        elif decision.action is Action.RETRY:
            self.log.mark_failed(trigger.key, event.seq, attempts, self.clock() + decision.delay)
            trigger.stats.retried += 1
        else:
            dead_lettered = await self._dead_letter(sub, attributes, event, answer)
            self.log.dead_letter(trigger.key, event.seq)
            if dead_lettered:
                trigger.stats.dead_lettered += 1
            else:
                trigger.stats.dropped += 1
        if self.on_outcome is not None:
            self.on_outcome(
                Outcome(
                    trigger.key,
                    event.seq,
                    str(event.attributes.get("id", "")),
                    decision.action,
                    status,
                    attempts,
                    decision.delay,
                    replied,
                    dead_lettered,
                )
            )

    def _reply(
        self, trigger: _Trigger, sub: _Subscription, event: StoredEvent, answer: Answer
    ) -> bool:
        """Put the reply into the broker; False when it is refused (the delivery stands)."""
        try:
            if answer.truncated:
                raise Rejected(
                    413, f"the reply is over the broker's limit of {MAX_BODY_BYTES} bytes"
                )
            replies = decode(dict(answer.headers), answer.body)
        except Rejected as exc:
            trigger.stats.replies_refused += 1
            logger.warning(
                "trigger %s: the subscriber's reply to event %s is not a valid CloudEvent (%s); "
                "the delivery counts, the reply is dropped",
                trigger.key,
                event.attributes.get("id"),
                exc.message,
            )
            return False
        if self.reply_to is None:
            logger.debug("trigger %s: a reply arrived but no reply_to is wired", trigger.key)
            return False
        ttl = event.attributes.get(TTL)
        for reply in replies:
            if ttl is not None:
                reply[TTL] = ttl  # the ingress decrements it: a reply loop ends after 255 hops
        try:
            self.reply_to(sub.namespace, sub.broker, replies)
        except Rejected as exc:
            trigger.stats.replies_refused += len(replies)
            logger.warning(
                "trigger %s: broker %s/%s refused the reply to event %s: %s",
                trigger.key,
                sub.namespace,
                sub.broker,
                event.attributes.get("id"),
                exc.message,
            )
            return False
        trigger.stats.replies += len(replies)
        return True

    async def _dead_letter(
        self, sub: _Subscription, attributes: dict[str, Any], event: StoredEvent, answer: Answer
    ) -> bool:
        """Send the event to the dead-letter sink, retrying as the delivery allows."""
        if sub.dead_letter_url is None:
            logger.warning(
                "trigger to %s: gave up on event %s (status %s) and no dead-letter sink is set; "
                "dropped",
                sub.subscriber_url,
                attributes.get("id"),
                answer.status,
            )
            return False
        failed = {
            **attributes,
            ERROR_DEST: sub.subscriber_url,
            ERROR_CODE: str(answer.status if answer.status is not None else 500),
        }
        if answer.body:
            failed[ERROR_DATA] = base64.b64encode(answer.body[:ERROR_DATA_MAX_BYTES]).decode()
        retries = 0
        while True:
            sent = await self.sender.send(sub.dead_letter_url, failed, event.data, sub.delivery)
            decision = sub.delivery.decide(retries, sent.status, sent.retry_after)
            if decision.action is Action.DELIVERED:
                return True
            if decision.action is Action.DEAD_LETTER:
                logger.error(
                    "dead-letter sink %s refused event %s (status %s); dropped",
                    sub.dead_letter_url,
                    attributes.get("id"),
                    sent.status,
                )
                return False
            retries += 1
            await asyncio.sleep(decision.delay)


def _guarded(key: str, predicate: Predicate) -> Predicate:
    """A filter that fails on an event is a miss, not a stuck trigger."""

    def matches(attributes: Mapping[str, str]) -> bool:
        try:
            return bool(predicate(attributes))
        except Exception:
            logger.exception("trigger %s: its filter failed on event %s", key, attributes.get("id"))
            return False

    return matches


def _log_unexpected_exit(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("%s stopped unexpectedly", task.get_name(), exc_info=task.exception())
