"""Dynamic batching: concurrent requests for one model become one predict call.

A request is a list of inputs with the batch on the first dimension: NumPy arrays (a framework
model's tensors) or Python lists of rows (a custom model's V1 `instances`, which may be anything
JSON holds). Requests that can be stacked — same number of inputs, same trailing shapes and
dtypes for arrays, same parameters — share a *batch key*; each key has its own open batch, so
requests that cannot be concatenated are batched apart instead of failing together.

When a batch goes. A batch waits only while waiting can pay off, that is while the model is busy
with a batch of the same key:

- if no batch of its key is being predicted, a new batch goes at once: its predict starts one
  turn of the event loop later, and every request that arrives before then (read in the same
  turn or the next) joins it. A lone request waits for nothing; KServe's batcher makes it wait
  the whole `maxLatency` (one client of the benchmark's MLP took 2.7 ms at p50 instead of 0.3);
- while a batch of its key is being predicted, the next batch fills, and goes as soon as the
  model is free again, or when it holds `max_batch_size` rows, or `max_latency` seconds after
  its first request — whichever comes first.

So `max_batch_size` and `max_latency` keep KServe's meaning (`maxBatchSize` counts instances,
that is rows; `maxLatency` bounds how long a request waits for its batch to go) as upper bounds,
and a request waits at most `max_latency` plus one batch's predict. Under load batches grow by
themselves to whatever arrived during the previous predict, as with Triton's dynamic batcher
without a queue delay. A batch that goes on `max_batch_size` or `max_latency` while another of
its key is still being predicted runs beside it.

Going concatenates every input along the first dimension (lists are joined), calls `predict`
once, and slices each output back to its caller in arrival order. When the batched call raises, the batch is split:
each request is predicted alone, so a request with bad input fails alone and the others get their
answers. A request of `max_batch_size` rows or more is predicted alone, never split.

With a `timeout` (KServe's `batcher.timeout`), a request that has no answer that many seconds
after it arrived fails with `BatchTimeout` (504); its rows are dropped from a batch that has not
gone yet, and a batch under way goes on for the others.

The loop's clock (`loop.time()`, `call_later`) is the only source of time, so the tests drive it
with a loop whose clock jumps to the next timer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from knserve.runtime.errors import BatchTimeout

# One input or output of a batch: an array, or a list of rows of any kind.
Rows = np.ndarray | list[Any]
PredictFn = Callable[[list[Rows], Hashable], Awaitable[Sequence[Rows]]]


@dataclass(frozen=True)
class BatchStats:
    """Counters a caller can export as metrics."""

    batches: int
    requests: int
    rows: int
    split_retries: int


def batch_key(inputs: Sequence[Rows], parameters: Hashable = None) -> Hashable:
    """The key under which requests can share a batch: trailing shapes, dtypes and parameters
    (any list of rows stacks with any other)."""
    return tuple([_stacking(rows) for rows in inputs]), parameters


def _stacking(rows: Rows) -> Hashable:
    return (rows.shape[1:], rows.dtype) if isinstance(rows, np.ndarray) else list


@dataclass(slots=True)
class _Pending:
    inputs: list[Rows]
    rows: int
    parameters: Hashable
    future: asyncio.Future[list[Rows]]
    started: float = 0.0  # perf_counter() when its batch's predict began


@dataclass(slots=True)
class _Batch:
    requests: list[_Pending] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None
    # Its predict is scheduled; until that starts, requests may still join.
    going: bool = False


class Batcher:
    """Groups concurrent requests into batches for one model.

    `predict` receives the concatenated inputs and the batch's parameters (every request in a
    batch has the same ones) and must return one array per output, each with as many rows as the
    inputs had. It is awaited; a synchronous model is wrapped by the caller.
    """

    def __init__(
        self,
        predict: PredictFn,
        max_batch_size: int,
        max_latency: float,
        timeout: float | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size is {max_batch_size}, it must be 1 or more")
        if max_latency < 0:
            raise ValueError(f"max_latency is {max_latency}, it must be 0 or more seconds")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout is {timeout}, it must be more than 0 seconds (or none)")
        self._predict = predict
        # Told (submitted, predict began) after each request, when tracing records batch waits.
        self.waited: Callable[[float, float], None] | None = None
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency
        self.timeout = timeout
        self._open: dict[Hashable, _Batch] = {}
        # Batches of each key being predicted; a key is absent when its model is free.
        self._busy: dict[Hashable, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._batches = self._requests = self._rows = self._split_retries = 0

    @property
    def stats(self) -> BatchStats:
        return BatchStats(self._batches, self._requests, self._rows, self._split_retries)

    async def submit(self, inputs: Sequence[Rows], parameters: Hashable = None) -> list[Rows]:
        """Predict `inputs` as part of a batch; returns this request's rows of every output."""
        arrays = [a if isinstance(a, list) else np.asarray(a) for a in inputs]
        rows = _rows_of(arrays)
        loop = asyncio.get_running_loop()
        pending = _Pending(arrays, rows, parameters, loop.create_future())
        self._requests += 1
        key = batch_key(arrays, parameters)
        if rows >= self.max_batch_size:
            self._go(key, _Batch([pending], rows))
        else:
            self._add(loop, key, pending)
        submitted = time.perf_counter() if self.waited is not None else 0.0
        if self.timeout is None:
            outputs = await pending.future
        else:
            try:
                # a request given up on is skipped when its batch runs (its future is cancelled)
                outputs = await asyncio.wait_for(pending.future, self.timeout)
            except TimeoutError:
                raise BatchTimeout(
                    f"the request waited over the batcher's timeout of {self.timeout:g}s for its "
                    "batch's prediction; raise the timeout or lower max_batch_size/max_latency"
                ) from None
        if self.waited is not None:
            self.waited(submitted, pending.started)
        return outputs

    def _add(self, loop: asyncio.AbstractEventLoop, key: Hashable, pending: _Pending) -> None:
        batch = self._open.get(key)
        if batch is not None and batch.rows + pending.rows > self.max_batch_size:
            self._seal(key, batch)
            batch = None
        if batch is None:
            batch = self._open[key] = _Batch()
            if key in self._busy:
                batch.timer = loop.call_later(self.max_latency, self._go, key, batch)
            else:
                self._go(key, batch)  # the model is free: waiting would gain nothing
        batch.requests.append(pending)
        batch.rows += pending.rows
        if batch.rows >= self.max_batch_size:
            self._seal(key, batch)

    def _seal(self, key: Hashable, batch: _Batch) -> None:
        """Take no more requests into `batch`, and make sure it goes."""
        if self._open.get(key) is batch:
            del self._open[key]
        self._go(key, batch)

    def _go(self, key: Hashable, batch: _Batch) -> None:
        if batch.going:
            return
        batch.going = True
        if batch.timer is not None:
            batch.timer.cancel()
        self._busy[key] = self._busy.get(key, 0) + 1
        task = asyncio.get_running_loop().create_task(self._predict_batch(key, batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _predict_batch(self, key: Hashable, batch: _Batch) -> None:
        try:
            # One loop turn for the requests already read to join (their tasks are queued
            # behind this one), then the batch takes no more.
            await asyncio.sleep(0)
            if self._open.get(key) is batch:
                del self._open[key]
            await self._predict_live(batch.requests)
        finally:
            left = self._busy[key] - 1
            if left:
                self._busy[key] = left
            else:
                del self._busy[key]
                waiting = self._open.get(key)
                if waiting is not None:  # it filled while the model was busy: its turn
                    self._go(key, waiting)

    async def _predict_live(self, requests: list[_Pending]) -> None:
        live = [r for r in requests if not r.future.done()]  # a caller may have given up
        if not live:
            return
        started = time.perf_counter()
        for request in live:
            request.started = started
        self._batches += 1
        rows = sum(r.rows for r in live)
        self._rows += rows
        if len(live) == 1:
            await self._predict_one(live[0])
            return
        try:
            joined = [_join([r.inputs[i] for r in live]) for i in range(len(live[0].inputs))]
            outputs = await self._predict(joined, live[0].parameters)
            _check_rows(outputs, rows)
        except Exception:
            # One bad request must not fail the others: predict each alone.
            self._split_retries += 1
            await asyncio.gather(*(self._predict_one(r) for r in live))
            return
        start = 0
        for request in live:
            end = start + request.rows
            if not request.future.done():
                request.future.set_result([out[start:end] for out in outputs])
            start = end

    async def _predict_one(self, request: _Pending) -> None:
        try:
            outputs = await self._predict(request.inputs, request.parameters)
            _check_rows(outputs, request.rows)
        except Exception as exc:
            if not request.future.done():
                request.future.set_exception(exc)
            return
        if not request.future.done():
            request.future.set_result(list(outputs))

    async def close(self) -> None:
        """Send every open batch and wait for the predictions under way."""
        for key, batch in list(self._open.items()):
            self._go(key, batch)
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _rows_of(inputs: list[Rows]) -> int:
    """The batch size the inputs share (their first dimension)."""
    if not inputs or any(isinstance(a, np.ndarray) and a.ndim == 0 for a in inputs):
        raise ValueError("every input must have a batch dimension (at least one dimension)")
    sizes = [len(a) for a in inputs]
    if any(size != sizes[0] for size in sizes):
        raise ValueError(
            f"inputs have different batch sizes ({', '.join(map(str, sizes))}); they must all "
            "have the same first dimension"
        )
    return sizes[0]


def _join(parts: list[Rows]) -> Rows:
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    return [row for part in parts for row in part]


def _check_rows(outputs: Sequence[Any], rows: int) -> None:
    for index, out in enumerate(outputs):
        got = len(out)
        if got != rows:
            raise ValueError(
                f"the model returned {got} rows for output {index} of a batch of {rows}; "
                "a batched model must return one row per input row"
            )
