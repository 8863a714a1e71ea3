"""The dynamic batching contract: order, isolation of failures, separate keys, size and latency."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from knserve.runtime.batching import Batcher, batch_key
from knserve.runtime.errors import BatchTimeout


class RecordingModel:
    """A real computation (row sums times a weight) that records the batch sizes it was called with."""

    def __init__(self, fail_on: float | None = None) -> None:
        self.calls: list[int] = []
        self.parameters: list[object] = []
        self.fail_on = fail_on

    async def __call__(self, inputs: list[np.ndarray], parameters: object) -> list[np.ndarray]:
        (x,) = inputs
        self.calls.append(len(x))
        self.parameters.append(parameters)
        if self.fail_on is not None and np.any(x == self.fail_on):
            raise ValueError(f"bad value {self.fail_on}")
        return [x.sum(axis=1) * 2.0, np.full(len(x), len(x))]


async def test_concurrent_requests_share_one_call_and_each_gets_its_own_rows_in_order() -> None:
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=64, max_latency=0.05)
    requests = [np.array([[i, i + 1.0]]) for i in range(10)]
    results = await asyncio.gather(*(batcher.submit([r]) for r in requests))
    assert model.calls == [10]
    for i, (sums, batch_size) in enumerate(results):
        np.testing.assert_array_equal(sums, [2 * (2 * i + 1.0)])
        assert batch_size.tolist() == [10]
    assert batcher.stats.batches == 1 and batcher.stats.requests == 10


async def test_multi_row_requests_are_sliced_back_by_their_row_counts() -> None:
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=64, max_latency=0.02)
    a = np.arange(6.0).reshape(3, 2)
    b = np.arange(10.0, 14.0).reshape(2, 2)
    ra, rb = await asyncio.gather(batcher.submit([a]), batcher.submit([b]))
    assert model.calls == [5]
    np.testing.assert_array_equal(ra[0], a.sum(axis=1) * 2)
    np.testing.assert_array_equal(rb[0], b.sum(axis=1) * 2)


async def test_a_bad_request_fails_alone() -> None:
    model = RecordingModel(fail_on=-1.0)
    batcher = Batcher(model, max_batch_size=64, max_latency=0.02)
    good = [batcher.submit([np.array([[1.0, 2.0]])]) for _ in range(3)]
    bad = batcher.submit([np.array([[-1.0, 2.0]])])
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(results[3], ValueError)
    for result in results[:3]:
        assert not isinstance(result, BaseException)
        np.testing.assert_array_equal(result[0], [6.0])
    assert model.calls[0] == 4  # tried together first, then one by one
    assert sorted(model.calls[1:]) == [1, 1, 1, 1]
    assert batcher.stats.split_retries == 1


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


async def test_a_full_batch_is_sent_without_waiting_for_the_latency() -> None:
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=4, max_latency=30.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await asyncio.wait_for(
        asyncio.gather(*(batcher.submit([np.ones((1, 2))]) for _ in range(8))), timeout=5
    )
    assert model.calls == [4, 4]
    assert loop.time() - start < 5


async def test_a_lone_request_waits_for_max_latency_then_goes_alone() -> None:
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=64, max_latency=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    await batcher.submit([np.ones((1, 2))])
    assert loop.time() - start >= 0.05
    assert model.calls == [1]


async def test_a_request_larger_than_the_batch_is_predicted_alone_unsplit() -> None:
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=4, max_latency=30.0)
    (sums, _) = await asyncio.wait_for(batcher.submit([np.ones((10, 2))]), timeout=5)
    assert model.calls == [10]
    assert sums.shape == (10,)


async def test_a_caller_that_times_out_does_not_break_the_batch() -> None:
    model = RecordingModel()
    batcher = Batcher(model, max_batch_size=64, max_latency=0.1)
    impatient = asyncio.create_task(
        asyncio.wait_for(batcher.submit([np.ones((1, 2))]), timeout=0.01)
    )
    patient = batcher.submit([np.full((1, 2), 3.0)])
    results = await asyncio.gather(impatient, patient, return_exceptions=True)
    assert isinstance(results[0], TimeoutError)
    np.testing.assert_array_equal(results[1][0], [12.0])
    assert model.calls == [1]  # the abandoned request was not predicted


async def test_a_model_that_returns_the_wrong_number_of_rows_fails_with_the_reason() -> None:
    async def broken(inputs: list[np.ndarray], parameters: object) -> list[np.ndarray]:
        return [np.zeros(1)]

    batcher = Batcher(broken, max_batch_size=8, max_latency=0.01)
    with pytest.raises(ValueError, match="one row per input row"):
        await batcher.submit([np.ones((2, 2))])


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        pytest.param([np.float64(1.0)], "batch dimension", id="scalar"),
        pytest.param([np.ones((2, 2)), np.ones((3, 2))], "different batch sizes", id="mismatch"),
    ],
)
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


def test_invalid_settings_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="max_batch_size is 0"):
        Batcher(RecordingModel(), max_batch_size=0, max_latency=0.1)
    with pytest.raises(ValueError, match="max_latency is -1"):
        Batcher(RecordingModel(), max_batch_size=1, max_latency=-1)


async def test_a_request_past_the_batch_timeout_gets_504_and_the_batch_goes_on() -> None:
    release = asyncio.Event()

    async def slow(inputs: list[np.ndarray], parameters: object) -> list[np.ndarray]:
        await release.wait()
        return [inputs[0] * 2]

    batcher = Batcher(slow, max_batch_size=2, max_latency=0.0, timeout=0.05)
    with pytest.raises(BatchTimeout) as timed_out:
        await batcher.submit([np.ones((1, 2))])
    assert timed_out.value.status == 504
    assert "timeout of 0.05s" in timed_out.value.message
    release.set()
    assert (await batcher.submit([np.ones((1, 2))]))[0].tolist() == [[2.0, 2.0]]
    with pytest.raises(ValueError, match="timeout is 0"):
        Batcher(slow, max_batch_size=1, max_latency=0.1, timeout=0)
