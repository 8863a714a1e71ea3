"""The KPA decider's metric window: per-second buckets averaged over the window, partial
windows, gaps as zero, restarts after silence, and the average between the bucket extremes.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knserve.knative.autoscaler.kpa import MetricWindow, Sample

# --- the metric window -----------------------------------------------------------------------


def test_window_averages_per_second_buckets() -> None:
    window = MetricWindow(10.0)
    for t in range(1, 11):
        window.record(Sample(float(t), float(t)))
    assert window.average(10.0) == 5.5  # (1 + … + 10) / 10
    window.record(Sample(11.0, 11.0))
    assert window.average(11.0) == 6.5  # (2 + … + 11) / 10: second 1 slid out


def test_window_bucket_is_the_mean_of_its_samples() -> None:
    window = MetricWindow(10.0)
    for t, v in ((1.0, 10.0), (1.25, 20.0), (1.75, 30.0)):
        window.record(Sample(t, v))
    assert window.average(1.9) == 20.0  # one bucket, mean of 10, 20, 30


def test_window_partial_at_start_and_after_last_sample() -> None:
    window = MetricWindow(10.0)
    for t in range(1, 6):
        window.record(Sample(float(t), 10.0))
    assert window.average(5.0) == 10.0  # 5 buckets written so far: not diluted by the empty 5
    assert window.average(8.0) == 10.0  # seconds 6..8 never reported: no information, not 0
    assert window.average(14.0) == 10.0  # only second 5 is still in the window (5..14)
    assert window.average(15.0) == 0.0  # a whole window without data


def test_window_gaps_between_samples_count_as_zero() -> None:
    window = MetricWindow(10.0)
    window.record(Sample(1.0, 10.0))
    window.record(Sample(4.0, 10.0))
    assert window.average(4.0) == 5.0  # (10 + 0 + 0 + 10) / 4


def test_window_restarts_after_a_silent_window_and_drops_stale_samples() -> None:
    window = MetricWindow(10.0)
    window.record(Sample(1.0, 10.0))
    window.record(Sample(20.0, 4.0))  # 19 s later: the first sample is history
    assert window.average(20.0) == 4.0
    window.record(Sample(5.0, 1000.0))  # older than the window: ignored
    assert window.average(20.0) == 4.0
    window.record(Sample(15.0, 2.0))  # late but inside the window: counted, window now 15..20
    assert window.average(20.0) == 1.0  # (2 + 0·4 + 4) / 6


def test_empty_window_reads_zero() -> None:
    assert MetricWindow(6.0).average(100.0) == 0.0


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=30))
def test_window_average_lies_between_the_bucket_extremes(values: list[float]) -> None:
    window = MetricWindow(60.0)
    for t, v in enumerate(values):
        window.record(Sample(float(t), v))
    average = window.average(float(len(values) - 1))
    assert min(values) - 1e-9 <= average <= max(values) + 1e-9
    assert average == pytest.approx(sum(values) / len(values))
