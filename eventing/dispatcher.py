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
  ``knativebrokerttl``, which is the broker's business, with ``Prefer: reply``;
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

The wire: given a :class:`LeanSender`, plain ``http://`` deliveries go out on its keep-alive
HTTP/1.1 connections (asyncio protocol, httptools parser: one write per request, no per-request
pool scan), which costs a fraction of httpx's client and pool per request (httpcore polls every
pooled socket on each request). Anything it does not take -- HTTPS, a URL with credentials, a
header it will not write -- goes through the httpx ``client`` as before.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

import httptools
import httpx

from knserve.eventing.backoff import Action, DeliverySpec, parse_retry_after
from knserve.eventing.encoding import is_cloudevent, to_binary, to_structured
from knserve.eventing.eventlog import EventLog, StoredEvent
from knserve.eventing.filters import Predicate
from knserve.eventing.ingress import MAX_BODY_BYTES, TTL, Rejected, decode

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "ERROR_CODE",
    "ERROR_DATA",
    "ERROR_DATA_MAX_BYTES",
    "ERROR_DEST",
    "Dispatcher",
    "LeanSender",
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


@dataclass(frozen=True)
class _Answer:
    status: int | None  # None: no answer (refused, reset, timed out)
    body: bytes
    headers: Mapping[str, str]
    retry_after: float | None = None
    truncated: bool = False  # the body was longer than the ingress takes; cut there


class Dispatcher:
    """Runs each Trigger's delivery loop (see the module docstring).

    ``client`` sends every request (the plane's client routes ``*.localhost`` hosts through the
    gateway) that ``sender``, a :class:`LeanSender`, does not take; ``reply_to`` receives replies (``Ingress.accept``; may be set after construction);
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
        self.log, self.client, self.reply_to = log, client, reply_to
        self.sender = sender  # plain http:// deliveries; None: all through ``client``
        self.clock = clock or log.clock
        self.concurrency, self.default_timeout = concurrency, default_timeout
        self.on_outcome, self.compact_interval = on_outcome, compact_interval
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

    async def close(self) -> None:
        """Stop every loop and delivery; what they had claimed is due again (for the next run)."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
            self._housekeeping = None
        for trigger in list(self._triggers.values()):
            await self._stop(trigger)
            self.log.release(trigger.key)
        if self.sender is not None:
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
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(trigger.wakeup.wait(), timeout)
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
            events = self.log.pending(trigger.key, batch, matches=subscription.predicate)
            trigger.claimed.extend(events)
            exhausted = len(events) < batch
        while trigger.claimed and len(trigger.inflight) < self.concurrency:
            event = trigger.claimed.popleft()
            task = asyncio.create_task(
                self._deliver(trigger, subscription, event),
                name=f"deliver {trigger.key}#{event.seq}",
            )
            trigger.inflight.add(task)
            task.add_done_callback(lambda t, trigger=trigger: self._finished(trigger, t))
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
        answer = await self._send(sub.subscriber_url, attributes, event.data, sub.delivery)
        status, replied = answer.status, False
        if status is not None and 200 <= status < 300 and is_cloudevent(answer.headers):
            try:
                replied = self._reply(trigger, sub, event, answer)
            except Exception as exc:  # the reply could not be stored: the delivery did not finish
                logger.warning("trigger %s: storing the reply failed: %s", trigger.key, exc)
                answer = _Answer(None, f"reply could not be stored: {exc}".encode(), {})
                status = None
        decision = sub.delivery.decide(event.attempts, status, answer.retry_after)
        attempts = event.attempts + 1
        dead_lettered = False
        if decision.action is Action.DELIVERED:
            self.log.mark_delivered(trigger.key, event.seq)
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
        self, trigger: _Trigger, sub: _Subscription, event: StoredEvent, answer: _Answer
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
        self, sub: _Subscription, attributes: dict[str, Any], event: StoredEvent, answer: _Answer
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
            sent = await self._send(sub.dead_letter_url, failed, event.data, sub.delivery)
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

    async def _send(
        self, url: str, attributes: Mapping[str, Any], data: bytes | None, delivery: DeliverySpec
    ) -> _Answer:
        encode = to_structured if delivery.format == "json" else to_binary
        headers, body = encode(attributes, data)
        headers["prefer"] = "reply"
        timeout = delivery.timeout or self.default_timeout
        request = self.sender.prepare(url, headers, body) if self.sender is not None else None
        try:
            async with asyncio.timeout(timeout):
                if request is not None:
                    assert self.sender is not None
                    status, response_headers, content, truncated = await self.sender.send(
                        request, MAX_BODY_BYTES
                    )
                else:
                    response = await self.client.send(
                        self.client.build_request(
                            "POST", url, headers=headers, content=body, timeout=timeout
                        ),
                        stream=True,
                    )
                    try:
                        content, truncated = await _read(response, MAX_BODY_BYTES)
                    finally:
                        await response.aclose()
                    status, response_headers = response.status_code, response.headers
        except TimeoutError:
            return _Answer(None, f"dispatch error: no answer within {timeout:g}s".encode(), {})
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            return _Answer(None, f"dispatch error: {type(exc).__name__}: {exc}".encode(), {})
        retry_after = parse_retry_after(response_headers.get("retry-after"), self.clock())
        return _Answer(status, content, response_headers, retry_after, truncated)


async def _read(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """The body, and whether it was cut at ``limit`` bytes (a reply larger than the ingress
    takes is refused; a failed body only feeds knativeerrordata, 1,024 bytes of it)."""
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


# ---- the lean sender -----------------------------------------------------------------------------

_UNSAFE_HEADER = re.compile(r"[\x00-\x1f\x7f]")  # CR, LF, NUL …: never written raw
MAX_IDLE_PER_ORIGIN = 64  # keep-alive connections kept per (host, port); more are closed


@dataclass(frozen=True)
class _Request:
    origin: tuple[str, int]  # where to connect: the server, or the proxy for its host
    data: bytes  # the whole request, head and body, written at once


class LeanSender:
    """POSTs over keep-alive HTTP/1.1 connections of its own: an asyncio protocol per connection,
    httptools to parse the answer, the request written in one piece. It takes ``http://`` URLs
    without credentials whose headers are printable ASCII (:meth:`prepare` says None to anything
    else, for httpx to send).

    ``proxies`` maps a host suffix (``".localhost"``) to the HTTP proxy for those hosts
    (``"http://127.0.0.1:8080"``, the plane's gateway), which then gets the request in absolute
    form, as httpx sends it to a proxy. A connection the server closed while idle is noticed by
    the event loop and never reused; if a reused connection fails before any answer arrives, the
    request is sent once more on a fresh one (delivery is at least once anyway).
    """

    def __init__(
        self, proxies: Mapping[str, str] | None = None, max_idle: int = MAX_IDLE_PER_ORIGIN
    ) -> None:
        self.proxies: dict[str, tuple[str, int]] = {}
        for suffix, proxy in (proxies or {}).items():
            parts = urlsplit(proxy)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(f"proxy {proxy!r} for {suffix!r}: give an http://host:port URL")
            self.proxies[suffix] = (parts.hostname, parts.port or 80)
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._targets: dict[str, tuple[tuple[str, int], bytes, bytes] | None] = {}

    def prepare(self, url: str, headers: Mapping[str, str], body: bytes) -> _Request | None:
        """The request, ready to send; None when httpx should send it instead."""
        target = self._targets.get(url)
        if target is None and url not in self._targets:
            if len(self._targets) > 1024:
                self._targets.clear()  # subscriber URLs are few; this only bounds a leak
            target = self._targets[url] = self._target(url)
        if target is None:
            return None
        origin, start, host = target
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        raw = "".join(headers.values()) + "".join(headers)
        if _UNSAFE_HEADER.search(raw) or not lines.isascii():
            return None
        head = b"%s\r\nhost: %s\r\ncontent-length: %d\r\n%s\r\n" % (
            start,
            host,
            len(body),
            lines.encode("ascii"),
        )
        return _Request(origin, head + body)

    def _target(self, url: str) -> tuple[tuple[str, int], bytes, bytes] | None:
        try:
            parts = urlsplit(url)
            port = parts.port or 80
        except ValueError:
            return None
        host = parts.hostname
        if parts.scheme != "http" or not host or "@" in parts.netloc or not url.isascii():
            return None
        if _UNSAFE_HEADER.search(url) or " " in url:
            return None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        proxy = next((p for suffix, p in self.proxies.items() if host.endswith(suffix)), None)
        start = f"POST {f'http://{parts.netloc}{path}' if proxy else path} HTTP/1.1".encode()
        return proxy or (host, port), start, parts.netloc.encode()

    async def send(self, request: _Request, limit: int) -> tuple[int, dict[str, str], bytes, bool]:
        """Status, headers (lowercase names), body (cut at ``limit`` bytes) and whether it was
        cut. Raises OSError (ConnectionError) when there is no answer."""
        idle = self._idle.get(request.origin)
        while idle:
            connection = idle.pop()
            if connection.usable():
                try:
                    return await self._exchange(connection, request, limit)
                except ConnectionError:
                    if connection.answered:
                        raise
                    break  # closed under us before answering: once more, on a fresh one
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, *request.origin)
        return await self._exchange(connection, request, limit)

    async def _exchange(
        self, connection: _Connection, request: _Request, limit: int
    ) -> tuple[int, dict[str, str], bytes, bool]:
        try:
            answer = await connection.exchange(request.data, limit)
        except BaseException:
            connection.close()  # cancelled or failed mid-exchange: its state is unknown
            raise
        if connection.usable():
            idle = self._idle.setdefault(request.origin, [])
            if len(idle) < self.max_idle:
                idle.append(connection)
            else:
                connection.close()
        return answer

    def close(self) -> None:
        """Close the idle connections (the sender stays usable: it opens new ones)."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class _Connection(asyncio.Protocol):
    """One client connection: one exchange at a time, parsed by httptools."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.answered = False  # some of an answer arrived during the current exchange
        self._waiter: asyncio.Future[tuple[int, dict[str, str], bytes, bool]] | None = None
        self._keep_alive = False

    # -- the exchange --
    async def exchange(self, data: bytes, limit: int) -> tuple[int, dict[str, str], bytes, bool]:
        if self.closed or self.transport is None:
            raise ConnectionResetError("the connection is closed")
        self._reset(limit)
        self.answered = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def usable(self) -> bool:
        return not self.closed and self._keep_alive and self._waiter is None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _reset(self, limit: int) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._limit = limit
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._status = 0
        self._headers_done = False
        self._keep_alive = False

    def _finish(self, truncated: bool = False) -> None:
        if self._waiter is not None and not self._waiter.done():
            answer = (self._status, self._headers, b"".join(self._body), truncated)
            self._waiter.set_result(answer)

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    # -- asyncio.Protocol --
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"the server's answer is not valid HTTP/1.1: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            # an answer without a length ends when the connection does
            delimited = "content-length" in self._headers or "chunked" in self._headers.get(
                "transfer-encoding", ""
            )
            if self._headers_done and not delimited:
                self._finish()
            else:
                self._waiter.set_exception(
                    ConnectionResetError(f"the server closed the connection ({exc or 'EOF'})")
                )

    # -- httptools callbacks --
    def on_header(self, name: bytes, value: bytes) -> None:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = self._status >= 200

    def on_body(self, body: bytes) -> None:
        if self.closed:
            return  # cut already
        self._body.append(body)
        self._size += len(body)
        if self._size > self._limit:
            self._body = [b"".join(self._body)[: self._limit]]
            self._finish(truncated=True)
            self.close()  # the rest is not wanted: this connection is done

    def on_message_complete(self) -> None:
        if 100 <= self._status < 200:  # an interim answer (100 Continue): the real one follows
            self._headers, self._headers_done = {}, False
            return
        self._keep_alive = self._parser.should_keep_alive()
        self._finish()


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
