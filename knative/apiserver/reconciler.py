"""What every controller of the plane shares: a store watch, a work queue, Knative's conditions.

Controllers here are level-based, as Knative's and kopf's are: an event only says *which* object
to look at again (`WorkQueue.mark`); reconciling reads the current state and converges, so a
missed or repeated event costs nothing. A key is queued at most once however many events name it,
and a Conflict (someone wrote meanwhile) queues it again at once.

Any other failure is what the reconciler could not handle, and it must not stay in a log: the
queue logs it once (with its traceback; the same failure again only at debug level), hands the
message to the controller, which writes it onto the object as Ready=False, reason InternalError
(`mark_failed`, Knative's generated reconcilers' event reason), and retries the key with
client-go's per-item exponential back-off (5 ms doubling up to 1000 s) until it succeeds. One bad
object never stalls the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from knserve.knative.apiserver.errors import ApiError
from knserve.knative.apiserver.kinds import Kind
from knserve.knative.apiserver.store import Event, Store, now

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


def condition(
    ctype: str,
    status: str,
    reason: str | None = None,
    message: str | None = None,
    previous: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Knative status condition; `lastTransitionTime` moves only when the status changes."""
    cond: dict[str, Any] = {"type": ctype, "status": status}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    old: dict[str, Any] = next((c for c in previous or [] if c.get("type") == ctype), {})
    keep = old.get("status") == status
    cond["lastTransitionTime"] = (
        old["lastTransitionTime"] if keep and old.get("lastTransitionTime") else now()
    )
    return cond


# client-go's DefaultItemBasedRateLimiter: a failing key waits 5 ms, doubling to at most 1000 s.
RETRY_BASE_DELAY, RETRY_MAX_DELAY = 0.005, 1000.0
INTERNAL_ERROR = "InternalError"


def retry_delay(
    failures: int, base: float = RETRY_BASE_DELAY, cap: float = RETRY_MAX_DELAY
) -> float:
    """Seconds before retrying a key that failed `failures` times in a row (1 or more)."""
    return float(min(cap, base * 2 ** min(failures - 1, 64)))


def mark_failed(
    store: Store, kind: Kind, namespace: str, name: str, message: str, reason: str = INTERNAL_ERROR
) -> None:
    """Write Ready=False with `reason` and `message` onto the object's status, keeping its other
    conditions, for the generation it has (Knative bumps observedGeneration whether or not the
    reconcile succeeded). Nothing to do for an object deleted meanwhile."""
    obj = store.find(kind, namespace, name)
    if obj is None:
        return
    status = dict(obj.get("status") or {})
    previous = status.get("conditions") or []
    ready = condition("Ready", "False", reason, message, previous)
    status["conditions"] = [ready, *(c for c in previous if c.get("type") != "Ready")]
    status["observedGeneration"] = obj["metadata"].get("generation")
    store.write_status(kind, obj, status)


class WorkQueue(Generic[K]):
    """Keys waiting to be reconciled, each queued at most once; failed keys come back after a
    back-off (see the module docstring)."""

    def __init__(
        self, base_delay: float = RETRY_BASE_DELAY, max_delay: float = RETRY_MAX_DELAY
    ) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._pending: set[K] = set()
        self._base_delay, self._max_delay = base_delay, max_delay
        self._failures: dict[K, int] = {}  # consecutive failures per key
        self._logged: dict[K, str] = {}  # the failure last logged in full per key

    def mark(self, key: K) -> None:
        """Reconcile `key` soon (again, if it is already done)."""
        if key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    async def run(
        self,
        reconcile: Callable[[K], Awaitable[None]],
        what: str,
        failed: Callable[[K, str], None] | None = None,
    ) -> None:
        """Reconcile keys as they are marked, until cancelled; `what` names them in logs, and
        `failed(key, message)` puts a failure onto the object."""
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            try:
                await reconcile(key)
            except ApiError as exc:
                if exc.reason == "Conflict":  # someone wrote meanwhile: read again
                    log.debug("reconciling %s %s: %s", what, key, exc.message)
                    self.mark(key)
                else:
                    self._failed(key, what, exc.message, exc, failed)
            except Exception as exc:
                self._failed(key, what, str(exc) or type(exc).__name__, exc, failed)
            else:
                self._failures.pop(key, None)
                self._logged.pop(key, None)

    def _failed(
        self,
        key: K,
        what: str,
        message: str,
        exc: Exception,
        failed: Callable[[K, str], None] | None,
    ) -> None:
        count = self._failures[key] = self._failures.get(key, 0) + 1
        delay = retry_delay(count, self._base_delay, self._max_delay)
        if self._logged.get(key) != message:
            self._logged[key] = message
            log.error(
                "reconciling %s %s failed (retrying with back-off): %s",
                what,
                key,
                message,
                exc_info=exc,
            )
        else:
            log.debug(
                "reconciling %s %s failed again (%d times; next try in %.3gs): %s",
                what,
                key,
                count,
                delay,
                message,
            )
        if failed is not None:
            try:
                failed(key, message)
            except Exception:  # the status write may fail as the reconcile did: the retry stays
                log.debug("writing the failure of %s %s onto it failed", what, key, exc_info=True)
        asyncio.get_running_loop().call_later(delay, self.mark, key)


@contextlib.asynccontextmanager
async def watching(
    store: Store, handle: Callable[[Event], Awaitable[None]], name: str
) -> AsyncIterator[None]:
    """Feed every store event to `handle` while the block runs.

    The watch starts before the block, so objects listed inside it miss no change made meanwhile.
    """
    events = store.watch()

    async def feed() -> None:
        while True:
            event = await events.get()
            try:
                await handle(event)
            except Exception:
                log.exception("%s: handling a %s of %s failed", name, event.type, event.kind.kind)

    task = asyncio.create_task(feed(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.unwatch(events)
