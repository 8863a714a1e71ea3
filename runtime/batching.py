"""Dynamic batching: concurrent requests for one model become one predict call.

A request is a list of input arrays with the batch on the first dimension. Requests that can be
stacked — same number of inputs, same trailing shapes and dtypes, same parameters — share a
*batch key*; each key has its own open batch, so requests that cannot be concatenated are batched
apart instead of failing together.

A batch closes when it holds `max_batch_size` rows or when `max_latency` seconds have passed since
its first request, whichever comes first (KServe's batcher counts instances, that is rows, the
same way). Closing concatenates every input along the first dimension, calls `predict` once, and
slices each output back to its caller in arrival order.

When the batched call raises, the batch is split: each request is predicted alone, so a request
with bad input fails alone and the others get their answers. A request larger than
`max_batch_size` rows on its own is predicted alone, never split.

The loop's clock (`loop.time()`, `call_later`) is the only source of time, so tests can drive it
with a fake loop clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from knserve.runtime.errors import BatchTimeout

PredictFn = Callable[[list[np.ndarray], Hashable], Awaitable[list[np.ndarray]]]


@dataclass(frozen=True)
class BatchStats:
    """Counters a caller can export as metrics."""

    batches: int
    requests: int
    rows: int
    split_retries: int


def batch_key(inputs: Sequence[np.ndarray], parameters: Hashable = None) -> Hashable:
    """The key under which requests can share a batch: trailing shapes, dtypes and parameters."""
    return (
        tuple((array.shape[1:], array.dtype.str) for array in inputs),
        parameters,
    )


@dataclass
class _Pending:
    inputs: list[np.ndarray]
    rows: int
    parameters: Hashable
    future: asyncio.Future[list[np.ndarray]]


@dataclass
class _OpenBatch:
    requests: list[_Pending] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None


class Batcher:
    """Groups concurrent requests into batches for one model.

    `predict` receives the concatenated inputs and the batch's parameters (every request in a
    batch has the same ones) and must return one array per output, each with as many rows as the
    inputs had. It is awaited; a synchronous model is wrapped by the caller.
    """

    def __init__(self, predict: PredictFn, max_batch_size: int, max_latency: float,
                 timeout: float | None = None) -> None:  # fmt: skip
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout is {timeout}, it must be more than 0 seconds (or none)")
        self.timeout = timeout
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size is {max_batch_size}, it must be 1 or more")
        if max_latency < 0:
            raise ValueError(f"max_latency is {max_latency}, it must be 0 or more seconds")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency
        self._open: dict[Hashable, _OpenBatch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._batches = self._requests = self._rows = self._split_retries = 0

    @property
    def stats(self) -> BatchStats:
        return BatchStats(self._batches, self._requests, self._rows, self._split_retries)

    async def submit(
        self, inputs: Sequence[np.ndarray], parameters: Hashable = None
    ) -> list[np.ndarray]:
        """Predict `inputs` as part of a batch; returns this request's rows of every output."""
        arrays = [np.asarray(a) for a in inputs]
        if not arrays or any(a.ndim == 0 for a in arrays):
            raise ValueError("every input must have a batch dimension (at least one dimension)")
        rows = arrays[0].shape[0]
        if any(a.shape[0] != rows for a in arrays):
            raise ValueError(
                "inputs have different batch sizes "
                f"({', '.join(str(a.shape[0]) for a in arrays)}); they must all have the same first dimension"
            )
        loop = asyncio.get_running_loop()
        pending = _Pending(arrays, rows, parameters, loop.create_future())
        self._requests += 1
        if rows >= self.max_batch_size:
            self._run([pending])
            return await pending.future
        key = batch_key(arrays, parameters)
        batch = self._open.get(key)
        if batch is not None and batch.rows + rows > self.max_batch_size:
            self._close(key)
            batch = None
        if batch is None:
            batch = self._open[key] = _OpenBatch()
            batch.timer = loop.call_later(self.max_latency, self._close, key)
        batch.requests.append(pending)
        batch.rows += rows
        if batch.rows >= self.max_batch_size:
            self._close(key)
        if self.timeout is None:
            return await pending.future
        try:
            # a request given up on is skipped when its batch runs (its future is cancelled)
            return await asyncio.wait_for(pending.future, self.timeout)
        except TimeoutError:
            raise BatchTimeout(
                f"the request waited over the batcher's timeout of {self.timeout:g}s for its "
                "batch's prediction; raise the timeout or lower max_batch_size/max_latency"
            ) from None

    def _close(self, key: Hashable) -> None:
        batch = self._open.pop(key, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        self._run(batch.requests)

    def _run(self, requests: list[_Pending]) -> None:
        task = asyncio.get_running_loop().create_task(self._predict_batch(requests))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _predict_batch(self, requests: list[_Pending]) -> None:
        live = [r for r in requests if not r.future.done()]  # a caller may have given up
        if not live:
            return
        self._batches += 1
        self._rows += sum(r.rows for r in live)
        if len(live) == 1:
            await self._predict_one(live[0])
            return
        try:
            joined = [
                np.concatenate([r.inputs[i] for r in live]) for i in range(len(live[0].inputs))
            ]
            outputs = await self._predict(joined, live[0].parameters)
            _check_rows(outputs, sum(r.rows for r in live))
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
        """Flush every open batch and wait for the predictions under way."""
        for key in list(self._open):
            self._close(key)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _check_rows(outputs: Sequence[Any], rows: int) -> None:
    for index, out in enumerate(outputs):
        got = len(out)
        if got != rows:
            raise ValueError(
                f"the model returned {got} rows for output {index} of a batch of {rows}; "
                "a batched model must return one row per input row"
            )
