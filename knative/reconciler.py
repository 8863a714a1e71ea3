"""What every controller of the plane shares: a store watch, a work queue, Knative's conditions.

Controllers here are level-based, as Knative's and kopf's are: an event only says *which* object
to look at again (`WorkQueue.mark`); reconciling reads the current state and converges, so a
missed or repeated event costs nothing. A key is queued at most once however many events name it,
a Conflict (someone wrote meanwhile) queues it again, and any other failure is logged without
stopping the loop, since one bad object must not stall the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from knserve.knative.errors import ApiError
from knserve.knative.store import Event, Store, now

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


def condition(ctype: str, status: str, reason: str | None = None, message: str | None = None,
              previous: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """A Knative status condition; `lastTransitionTime` moves only when the status changes."""
    cond: dict[str, Any] = {"type": ctype, "status": status}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    old = next((c for c in previous or [] if c.get("type") == ctype), None)
    keep = old is not None and old.get("status") == status
    cond["lastTransitionTime"] = (
        old["lastTransitionTime"] if keep and old.get("lastTransitionTime") else now()
    )
    return cond


class WorkQueue(Generic[K]):
    """Keys waiting to be reconciled, each queued at most once."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._pending: set[K] = set()

    def mark(self, key: K) -> None:
        """Reconcile `key` soon (again, if it is already done)."""
        if key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    async def run(self, reconcile: Callable[[K], Awaitable[None]], what: str) -> None:
        """Reconcile keys as they are marked, until cancelled; `what` names them in logs."""
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            try:
                await reconcile(key)
            except ApiError as exc:
                log.warning("reconciling %s %s: %s", what, key, exc.message)
                if exc.reason == "Conflict":  # someone wrote meanwhile: read again
                    self.mark(key)
            except Exception:
                log.exception("reconciling %s %s failed", what, key)


@contextlib.asynccontextmanager
async def watching(store: Store, handle: Callable[[Event], Awaitable[None]], name: str) -> AsyncIterator[None]:  # fmt: skip
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
