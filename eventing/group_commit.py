"""Group commit: one SQLite transaction for every coroutine waiting on one.

A commit costs far more than the rows in it, and the broker answers 202 only once an event is on
disk (and records a delivery before it counts it), so committing each alone caps the broker at
one commit per event. Here a caller adds its item to the current group and waits; the group is
committed by a callback scheduled with ``call_soon`` when its first item joined -- that is, after
every coroutine that is ready on the event loop right now has added its own. Nothing waits on a
timer: a lone caller gets its commit in the next loop turn, and under load the group grows by
itself to what arrived during the previous commit (the commit blocks the loop, so requests queue
up in the sockets meanwhile).

Every item of a group is committed when its ``await`` returns, and none before. When the group's
commit fails, each item is committed alone, so one bad item (or a full disk at the worst moment)
fails only its own caller, who answers with its error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    """Items from many coroutines on one event loop, committed together by ``commit``, which
    takes a group of items and returns one result per item, in one transaction (all or none)."""

    def __init__(self, commit: Callable[[Sequence[Item]], Sequence[Result]]) -> None:
        self.commit = commit
        self._items: list[Item] = []
        self._waiters: list[asyncio.Future[Result]] = []
        self.commits = 0  # transactions so far: items / commits is the mean group size

    async def add(self, item: Item) -> Result:
        """Commit ``item`` with whatever else is added in this loop turn; its result."""
        return await self.submit(item)

    def submit(self, item: Item) -> asyncio.Future[Result]:
        """:meth:`add` for a caller that is not a coroutine (a protocol callback): the future
        of ``item``'s result, done once it is committed."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Result] = loop.create_future()
        if not self._items:
            loop.call_soon(self.flush)
        self._items.append(item)
        self._waiters.append(waiter)
        return waiter

    def flush(self) -> None:
        """Commit the current group now (scheduled by :meth:`add`; call it before closing)."""
        items, waiters = self._items, self._waiters
        if not items:
            return
        self._items, self._waiters = [], []
        self.commits += 1
        try:
            results: list[Result | Exception] = list(self.commit(items))
        except Exception as exc:
            # Nothing of the group was stored: each alone, so a bad one fails only itself.
            results = [exc] if len(items) == 1 else [self._alone(item) for item in items]
        for waiter, result in zip(waiters, results, strict=True):
            if waiter.done():  # its caller was cancelled (the client went away)
                continue
            if isinstance(result, Exception):
                waiter.set_exception(result)
            else:
                waiter.set_result(result)

    def _alone(self, item: Item) -> Result | Exception:
        self.commits += 1
        try:
            return self.commit([item])[0]
        except Exception as exc:
            return exc
