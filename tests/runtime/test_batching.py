"""The dynamic batching contract: order, isolation of failures, separate keys, when batches go,
the latency bound and timeouts.

Every async test runs on `FakeClockLoop`, whose clock jumps to the next timer whenever nothing is
ready to run: sleeps take no real time and every instant the batcher sees is exact, so the tests
assert times with `==` and a model that "takes" 10 ms is `await asyncio.sleep(0.010)`.
"""

from __future__ import annotations

import asyncio
import functools
import random
import selectors
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import numpy as np
import pytest
from net_fixtures import serve_in_loop

from knserve.runtime.app import create_app
from knserve.runtime.batching import Batcher, BatchStats, batch_key
from knserve.runtime.errors import BatchTimeout
from knserve.runtime.model import Model
from knserve.runtime.settings import RuntimeSettings, settings_from_env


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without blocking; when nothing is ready before the next timer, jumps to it."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer at all: only a thread or real I/O can wake the loop
            return super().select(None)
        self.now += timeout
        return ready


class FakeClockLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time that starts at 0 and moves only to the next timer."""

    def __init__(self) -> None:
        self._clock = _JumpingSelector()
        super().__init__(self._clock)

    def time(self) -> float:
        return self._clock.now


def on_fake_clock(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., None]:
    """Run an async test on a `FakeClockLoop` (pytest-asyncio's loops keep real time)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        with asyncio.Runner(loop_factory=FakeClockLoop) as runner:
            runner.run(test(*args, **kwargs))

    return run


def now() -> float:
    return asyncio.get_running_loop().time()


class RecordingModel:
    """A real computation (row sums times a weight) that takes `seconds` of loop time per call and
    records when each call started and with how many rows."""

    def __init__(self, seconds: float = 0.0, fail_on: float | None = None) -> None:
        self.seconds = seconds
        self.fail_on = fail_on
        self.calls: list[int] = []
        self.starts: list[float] = []
        self.parameters: list[object] = []

    async def __call__(self, inputs: list[np.ndarray], parameters: object) -> list[np.ndarray]:
        (x,) = inputs
        self.calls.append(len(x))
        self.starts.append(now())
        self.parameters.append(parameters)
        if self.seconds:
            await asyncio.sleep(self.seconds)
        if self.fail_on is not None and np.any(x == self.fail_on):
            raise ValueError(f"bad value {self.fail_on}")
        return [x.sum(axis=1) * 2.0, np.full(len(x), len(x))]


async def submit_at(batcher: Batcher, at: float, inputs: list[np.ndarray]) -> tuple[float, Any]:
    """Submit at loop time `at`; returns (latency, result)."""
    await asyncio.sleep(at - now())
    start = now()
    result = await batcher.submit(inputs)
    return now() - start, result


# ---- order, slicing, isolation, keys ------------------------------------------------------


@on_fake_clock
async def test_requests_arriving_together_share_one_call_and_get_their_rows_in_order() -> None:
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=64, max_latency=0.05)
    requests = [np.array([[i, i + 1.0]]) for i in range(10)]
    results = await asyncio.gather(*(batcher.submit([r]) for r in requests))
    assert model.calls == [10]
    assert model.starts == [0.0]  # the model was free: no wait for max_latency
    for i, (sums, batch_size) in enumerate(results):
        np.testing.assert_array_equal(sums, [2 * (2 * i + 1.0)])
        assert batch_size.tolist() == [10]
    assert batcher.stats == BatchStats(batches=1, requests=10, rows=10, split_retries=0)


@on_fake_clock
async def test_multi_row_requests_are_sliced_back_by_their_row_counts() -> None:
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=64, max_latency=0.02)
    a = np.arange(6.0).reshape(3, 2)
    b = np.arange(10.0, 14.0).reshape(2, 2)
    ra, rb = await asyncio.gather(batcher.submit([a]), batcher.submit([b]))
    assert model.calls == [5]
    np.testing.assert_array_equal(ra[0], a.sum(axis=1) * 2)
    np.testing.assert_array_equal(rb[0], b.sum(axis=1) * 2)


@on_fake_clock
async def test_lists_of_any_rows_are_joined_and_sliced_back_without_becoming_arrays() -> None:
    calls: list[list[Any]] = []

    async def describe(inputs: list[Any], parameters: object) -> list[Any]:
        (rows,) = inputs
        calls.append(rows)
        return [[f"{row['name']}:{len(row['tags'])}" for row in rows]]

    batcher = Batcher(describe, max_batch_size=64, max_latency=0.02)
    a = [{"name": "a", "tags": ["x"]}, {"name": "b", "tags": []}]  # ragged: no array holds them
    b = [{"name": "c", "tags": ["x", "y", "z"]}]
    ra, rb = await asyncio.gather(batcher.submit([a]), batcher.submit([b]))
    assert calls == [a + b]
    assert (ra, rb) == ([["a:1", "b:0"]], [["c:3"]])
    assert batch_key([a]) == batch_key([b]) != batch_key([np.zeros((1, 2))])


@on_fake_clock
async def test_a_bad_request_fails_alone() -> None:
    model = RecordingModel(fail_on=-1.0)
    batcher = Batcher(model, max_batch_size=64, max_latency=0.02)
    good = [batcher.submit([np.array([[float(i), 2.0]])]) for i in range(3)]
    bad = batcher.submit([np.array([[-1.0, 2.0]])])
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(results[3], ValueError)
    for i, result in enumerate(results[:3]):
        assert not isinstance(result, BaseException)
        np.testing.assert_array_equal(result[0], [2.0 * (i + 2.0)])
    assert model.calls == [4, 1, 1, 1, 1]  # tried together first, then one by one
    assert batcher.stats.split_retries == 1


@on_fake_clock
async def test_requests_that_cannot_be_stacked_are_batched_apart() -> None:
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=64, max_latency=0.02)
    narrow = [batcher.submit([np.ones((1, 2))]) for _ in range(2)]
    wide = [batcher.submit([np.ones((1, 3))]) for _ in range(3)]
    as_int = [batcher.submit([np.ones((1, 2), dtype=np.int64)])]
    other_params = [batcher.submit([np.ones((1, 2))], parameters=("k", 1))]
    results = await asyncio.gather(*narrow, *wide, *as_int, *other_params)
    assert sorted(model.calls) == [1, 1, 2, 3]
    assert [r[0].tolist() for r in results[2:5]] == [[6.0]] * 3
    assert ("k", 1) in model.parameters  # the batch's parameters reach the model


@on_fake_clock
async def test_one_keys_busy_model_does_not_hold_up_another_key() -> None:
    model = RecordingModel(seconds=0.010)
    batcher = Batcher(model, max_batch_size=64, max_latency=0.002)
    narrow = asyncio.create_task(submit_at(batcher, 0.0, [np.ones((1, 2))]))
    wide = asyncio.create_task(submit_at(batcher, 0.001, [np.ones((1, 3))]))
    await asyncio.gather(narrow, wide)
    assert model.starts == [0.0, 0.001]


# ---- when a batch goes ----------------------------------------------------------------------


@on_fake_clock
async def test_a_lone_request_goes_at_once_when_the_model_is_free() -> None:
    model = RecordingModel(seconds=0.001)
    batcher = Batcher(model, max_batch_size=64, max_latency=0.05)
    latency, _ = await submit_at(batcher, 0.0, [np.ones((1, 2))])
    assert model.calls == [1]
    assert latency == 0.001  # the predict alone, not max_latency


@on_fake_clock
async def test_a_request_read_before_the_predict_starts_still_joins_the_batch() -> None:
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=64, max_latency=0.05)
    first = asyncio.create_task(batcher.submit([np.ones((1, 2))]))
    await asyncio.sleep(0)  # the first request's batch has gone: its predict is queued
    second = asyncio.create_task(batcher.submit([np.ones((1, 2))]))
    await asyncio.gather(first, second)
    assert model.calls == [2]
    assert now() == 0.0


@on_fake_clock
async def test_requests_arriving_while_the_model_is_busy_go_together_when_it_is_free() -> None:
    model = RecordingModel(seconds=0.003)
    batcher = Batcher(model, max_batch_size=64, max_latency=0.010)
    arrivals = [0.0, 0.001, 0.0015, 0.002]
    latencies = await asyncio.gather(*(submit_at(batcher, t, [np.ones((1, 2))]) for t in arrivals))
    assert model.calls == [1, 3]
    assert model.starts == [0.0, 0.003]
    assert [lat for lat, _ in latencies] == pytest.approx([0.003, 0.005, 0.0045, 0.004])


@on_fake_clock
async def test_a_waiting_batch_goes_after_max_latency_even_if_the_model_is_still_busy() -> None:
    model = RecordingModel(seconds=0.010)
    batcher = Batcher(model, max_batch_size=64, max_latency=0.002)
    arrivals = [0.0, 0.001, 0.0025]
    latencies = await asyncio.gather(*(submit_at(batcher, t, [np.ones((1, 2))]) for t in arrivals))
    assert model.calls == [1, 2]
    assert model.starts == pytest.approx([0.0, 0.003])  # 0.001 + max_latency, beside the first
    assert [lat for lat, _ in latencies] == pytest.approx([0.010, 0.012, 0.0105])


@on_fake_clock
async def test_a_full_batch_goes_at_once_even_if_the_model_is_busy() -> None:
    model = RecordingModel(seconds=0.010)
    batcher = Batcher(model, max_batch_size=4, max_latency=30.0)
    first = asyncio.create_task(submit_at(batcher, 0.0, [np.ones((1, 2))]))
    rest = [asyncio.create_task(submit_at(batcher, 0.001, [np.ones((1, 2))])) for _ in range(9)]
    await asyncio.gather(first, *rest)
    assert model.calls == [1, 4, 4, 1]
    # two full batches go the moment they fill; the remainder waits until none is being predicted
    assert model.starts == pytest.approx([0.0, 0.001, 0.001, 0.011])


@on_fake_clock
async def test_a_request_that_would_overflow_the_batch_sends_it_and_starts_the_next() -> None:
    model = RecordingModel(seconds=0.010)
    batcher = Batcher(model, max_batch_size=4, max_latency=30.0)
    busy = asyncio.create_task(submit_at(batcher, 0.0, [np.ones((1, 2))]))
    three = asyncio.create_task(submit_at(batcher, 0.001, [np.ones((3, 2))]))
    two = asyncio.create_task(submit_at(batcher, 0.002, [np.ones((2, 2))]))
    await asyncio.gather(busy, three, two)
    assert model.calls == [1, 3, 2]
    assert model.starts == pytest.approx([0.0, 0.002, 0.012])  # the 2 waits for both to finish


@on_fake_clock
async def test_a_request_larger_than_the_batch_is_predicted_alone_unsplit() -> None:
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=4, max_latency=30.0)
    (sums, _) = await batcher.submit([np.ones((10, 2))])
    assert model.calls == [10]
    assert sums.shape == (10,)
    assert now() == 0.0


@on_fake_clock
async def test_no_request_waits_more_than_max_latency_plus_one_predict() -> None:
    predict, max_latency = 0.004, 0.002
    model = RecordingModel(seconds=predict)
    batcher = Batcher(model, max_batch_size=8, max_latency=max_latency)
    rng = random.Random(7)
    arrivals = sorted(round(rng.uniform(0, 0.2), 5) for _ in range(300))
    answers = await asyncio.gather(
        *(submit_at(batcher, t, [np.full((1, 2), float(i))]) for i, t in enumerate(arrivals))
    )
    for i, (latency, (sums, _)) in enumerate(answers):
        assert latency <= max_latency + predict + 1e-9
        assert sums.tolist() == [4.0 * i]  # its own answer, whatever batch it was in
    assert max(model.calls) == 8 and batcher.stats.batches < len(arrivals) / 2


# ---- failures and timeouts ----------------------------------------------------------------


@on_fake_clock
async def test_a_caller_that_gives_up_is_left_out_of_its_batch() -> None:
    model = RecordingModel(seconds=0.010)
    batcher = Batcher(model, max_batch_size=64, max_latency=0.1)
    busy = asyncio.create_task(submit_at(batcher, 0.0, [np.ones((1, 2))]))
    await asyncio.sleep(0.001)
    impatient = asyncio.create_task(
        asyncio.wait_for(batcher.submit([np.ones((1, 2))]), timeout=0.002)
    )
    patient = batcher.submit([np.full((1, 2), 3.0)])
    results = await asyncio.gather(busy, impatient, patient, return_exceptions=True)
    assert isinstance(results[1], TimeoutError)
    np.testing.assert_array_equal(results[2][0], [12.0])
    assert model.calls == [1, 1]  # the abandoned request was not predicted


@on_fake_clock
async def test_a_request_past_the_batch_timeout_gets_504_and_the_batch_goes_on() -> None:
    release = asyncio.Event()

    async def slow(inputs: list[np.ndarray], parameters: object) -> list[np.ndarray]:
        await release.wait()
        return [inputs[0] * 2]

    batcher = Batcher(slow, max_batch_size=2, max_latency=0.0, timeout=0.05)
    with pytest.raises(BatchTimeout) as timed_out:
        await batcher.submit([np.ones((1, 2))])
    assert now() == 0.05
    assert timed_out.value.status == 504
    assert "timeout of 0.05s" in timed_out.value.message
    release.set()
    assert (await batcher.submit([np.ones((1, 2))]))[0].tolist() == [[2.0, 2.0]]


@on_fake_clock
async def test_a_request_timed_out_before_its_batch_goes_is_not_predicted() -> None:
    model = RecordingModel(seconds=0.010)
    batcher = Batcher(model, max_batch_size=64, max_latency=0.1, timeout=0.005)
    first = asyncio.create_task(submit_at(batcher, 0.0, [np.ones((1, 2))]))
    late = asyncio.create_task(submit_at(batcher, 0.001, [np.ones((1, 2))]))
    results = await asyncio.gather(first, late, return_exceptions=True)
    assert isinstance(results[0], BatchTimeout) and isinstance(results[1], BatchTimeout)
    await batcher.close()
    assert model.calls == [1]  # the second timed out while waiting: its batch had no one left


@on_fake_clock
async def test_a_model_that_returns_the_wrong_number_of_rows_fails_with_the_reason() -> None:
    async def broken(inputs: list[np.ndarray], parameters: object) -> list[np.ndarray]:
        return [np.zeros(1)]

    batcher = Batcher(broken, max_batch_size=8, max_latency=0.01)
    with pytest.raises(ValueError, match="one row per input row"):
        await batcher.submit([np.ones((2, 2))])


@on_fake_clock
async def test_close_sends_the_waiting_batch_and_waits_for_it() -> None:
    model = RecordingModel(seconds=0.010)
    batcher = Batcher(model, max_batch_size=64, max_latency=1.0)
    busy = asyncio.create_task(submit_at(batcher, 0.0, [np.ones((1, 2))]))
    waiting = asyncio.create_task(submit_at(batcher, 0.001, [np.ones((1, 2))]))
    await asyncio.sleep(0.002)
    await batcher.close()
    assert now() == pytest.approx(0.012)
    assert busy.done() and waiting.done()
    assert model.starts == pytest.approx([0.0, 0.002])


# ---- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        pytest.param([np.float64(1.0)], "batch dimension", id="scalar"),
        pytest.param([np.ones((2, 2)), np.ones((3, 2))], "different batch sizes", id="mismatch"),
    ],
)
@on_fake_clock
async def test_inputs_without_a_common_batch_dimension_are_refused(
    inputs: list[np.ndarray], message: str
) -> None:
    batcher = Batcher(RecordingModel(), max_batch_size=8, max_latency=0.01)
    with pytest.raises(ValueError, match=message):
        await batcher.submit(inputs)


def test_batch_key_separates_shapes_dtypes_and_parameters() -> None:
    a = np.ones((1, 2))
    assert batch_key([a]) == batch_key([np.zeros((5, 2))])
    assert batch_key([a]) != batch_key([np.ones((1, 3))])
    assert batch_key([a]) != batch_key([a.astype(np.float32)])
    assert batch_key([a], "p") != batch_key([a])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"max_batch_size": 0, "max_latency": 0.1}, "max_batch_size is 0", id="size"),
        pytest.param({"max_batch_size": 1, "max_latency": -1}, "max_latency is -1", id="latency"),
        pytest.param(
            {"max_batch_size": 1, "max_latency": 0.1, "timeout": 0}, "timeout is 0", id="timeout"
        ),
    ],
)
def test_invalid_settings_say_what_is_allowed(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Batcher(RecordingModel(), **settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param({"KNSERVE_MAX_BATCH_SIZE": "-1"}, "max_batch_size is -1", id="size"),
        pytest.param({"KNSERVE_MAX_LATENCY_MS": "-2"}, "max_latency_ms is -2", id="latency"),
        pytest.param({"KNSERVE_BATCH_TIMEOUT_S": "0"}, "batch_timeout_s is 0", id="timeout"),
    ],
)
def test_batching_settings_out_of_range_fail_when_read(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings_from_env(env)


class HeldModel(Model):
    """A custom model whose first call is held until released, and which records the rows of
    every call: while it is busy, the requests that arrive fill the next batch."""

    def __init__(self) -> None:
        super().__init__("held")
        self.calls: list[list[int]] = []
        self.busy = asyncio.Event()
        self.release = asyncio.Event()
        self.full_batch = asyncio.Event()

    async def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        rows = payload["instances"]
        self.calls.append(list(rows))
        if len(self.calls) == 1:
            self.busy.set()
            await self.release.wait()
        if len(rows) == 3:
            self.full_batch.set()
        return {"predictions": [row * 10 for row in rows]}


async def test_a_custom_models_predict_is_batched_and_each_request_gets_its_own_rows() -> None:
    model = HeldModel()
    settings = RuntimeSettings(max_batch_size=3, max_latency_ms=60_000)  # goes when full
    app = create_app(settings, [model])
    await app.startup(wait=True)
    try:
        async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url) as client:

            async def predict(rows: list[int]) -> Any:
                response = await client.post("/v1/models/held:predict", json={"instances": rows})
                assert response.status_code == 200, response.text
                return response.json()

            first = asyncio.create_task(predict([1]))
            await model.busy.wait()
            two, one = asyncio.create_task(predict([2, 3])), asyncio.create_task(predict([4]))
            try:
                async with asyncio.timeout(30):  # bounds a failure only: the batch goes when full
                    await model.full_batch.wait()
            finally:
                model.release.set()  # the held request ends either way, so the server can stop
            answers = await asyncio.gather(first, two, one)
    finally:
        await app.shutdown()
    assert answers == [{"predictions": [10]}, {"predictions": [20, 30]}, {"predictions": [40]}]
    assert len(model.calls) == 2 and sorted(model.calls[1]) == [
        2,
        3,
        4,
    ]  # one call, 3 requests' rows
    assert app.repository.get("held").batcher.stats == BatchStats(  # type: ignore[union-attr]
        batches=2, requests=3, rows=4, split_retries=0
    )
