"""Outlier ejection as Istio's DestinationRule (Envoy's outlier detection) does it: a pure state
machine driven by observations and the time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from knserve.knative.activator.outlier import CONNECTION_FAILURE, OutlierDetector
from knserve.knative.apiserver.outlier_annotations import (
    MAX_EJECTION_TIME,
    OutlierDetection,
    outlier_annotation_errors,
)
from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store


def fail(detector: OutlierDetector, endpoint: str, times: int, now: float, status: int = 500,
         replicas: int = 2) -> float | None:  # fmt: skip
    until = None
    for _ in range(times):
        until = detector.observe(endpoint, status, now, replicas)
    return until


def test_five_consecutive_5xx_eject_for_the_base_time() -> None:
    detector = OutlierDetector()
    assert fail(detector, "a", 4, now=100.0) is None
    assert not detector.is_ejected("a")
    assert detector.observe("a", 500, 100.0, 2) == 130.0  # Istio's 30 s
    assert detector.is_ejected("a") and detector.ejected() == 1
    assert detector.ejections_total == 1


def test_a_success_resets_the_run() -> None:
    detector = OutlierDetector()
    fail(detector, "a", 4, now=0.0)
    assert detector.observe("a", 200, 0.0, 2) is None
    assert fail(detector, "a", 4, now=0.0) is None
    assert detector.observe("a", 404, 0.0, 2) is None  # a 4xx is the replica working
    assert fail(detector, "a", 5, now=0.0) == 30.0


@pytest.mark.parametrize("status", [502, 503, 504, CONNECTION_FAILURE])
def test_gateway_errors_and_connection_failures_count_as_5xx_too(status: int) -> None:
    detector = OutlierDetector()
    assert fail(detector, "a", 5, now=0.0, status=status) == 30.0


def test_consecutive_gateway_errors_has_its_own_threshold() -> None:
    config = OutlierDetection(consecutive_5xx_errors=0, consecutive_gateway_errors=2)
    detector = OutlierDetector(config)
    assert fail(detector, "a", 10, now=0.0, status=500) is None  # 5xx detection is off
    assert detector.observe("a", 502, 0.0, 2) is None
    assert detector.observe("a", CONNECTION_FAILURE, 0.0, 2) == 30.0


def test_zero_turns_detection_off() -> None:
    detector = OutlierDetector(OutlierDetection(consecutive_5xx_errors=0))
    assert fail(detector, "a", 100, now=0.0) is None


def test_the_ejection_ends_at_its_time_and_the_run_starts_again() -> None:
    detector = OutlierDetector(OutlierDetection(base_ejection_time=2.0))
    until = fail(detector, "a", 5, now=10.0)
    assert until == 12.0
    assert detector.next_rejoin() == 12.0
    assert not detector.rejoin("a", 11.99)
    assert detector.observe("a", 500, 11.0, 2) is None  # answers to requests sent before: ignored
    assert detector.rejoin("a", 12.0)
    assert not detector.is_ejected("a") and detector.next_rejoin() is None
    assert fail(detector, "a", 4, now=12.5) is None  # the run starts from zero


def test_repeated_ejections_last_longer_and_are_forgiven_per_interval() -> None:
    config = OutlierDetection(base_ejection_time=2.0, interval=10.0)
    detector = OutlierDetector(config)
    assert fail(detector, "a", 5, now=0.0) == 2.0
    detector.rejoin("a", 2.0)
    assert fail(detector, "a", 5, now=3.0) == 3.0 + 4.0  # second ejection: 2 x base
    detector.rejoin("a", 7.0)
    assert fail(detector, "a", 5, now=8.0) == 8.0 + 6.0  # third: 3 x base
    detector.rejoin("a", 14.0)
    # 25 s healthy = two intervals: the multiplier falls from 3 to 1, then this ejection makes 2
    assert fail(detector, "a", 5, now=39.0) == 39.0 + 4.0


def test_no_ejection_lasts_longer_than_envoys_max_ejection_time() -> None:
    config = OutlierDetection(base_ejection_time=100.0, interval=1000.0)
    detector = OutlierDetector(config)
    now = 0.0
    for expected in (100.0, 200.0, 300.0, MAX_EJECTION_TIME):
        until = fail(detector, "a", 5, now=now)
        assert until is not None and until - now == expected
        now = until
        detector.rejoin("a", now)
    assert OutlierDetection(base_ejection_time=400.0).ejection_time(3) == 400.0


def test_the_first_ejection_is_always_allowed_then_max_ejection_percent_applies() -> None:
    detector = OutlierDetector()  # Istio's maxEjectionPercent: 10
    assert fail(detector, "a", 5, now=0.0, replicas=2) is not None
    assert fail(detector, "b", 5, now=0.0, replicas=2) is None  # 50 % out already
    assert detector.ejected() == 1
    alone = OutlierDetector()
    assert fail(alone, "only", 5, now=0.0, replicas=1) is not None  # as Envoy: even the only one


def test_max_ejection_percent_counts_the_share_already_out() -> None:
    detector = OutlierDetector(OutlierDetection(max_ejection_percent=50))
    hosts = ["a", "b", "c", "d"]
    ejected = [fail(detector, h, 5, now=0.0, replicas=4) is not None for h in hosts]
    assert ejected == [True, True, False, False]  # 25 % < 50 % lets the second go, 50 % stops


def test_gone_replicas_are_forgotten() -> None:
    detector = OutlierDetector()
    fail(detector, "a", 5, now=0.0)
    fail(detector, "b", 3, now=0.0)
    detector.retain(["b", "c"])
    assert set(detector.hosts) == {"b"}
    assert detector.rejoin("a", 0.0)  # an unknown endpoint is not ejected


def test_annotations_set_the_settings() -> None:
    config = OutlierDetection.from_annotations(
        {
            "knserve.dev/outlier-consecutive-5xx-errors": "3",
            "knserve.dev/outlier-consecutive-gateway-errors": "2",
            "knserve.dev/outlier-base-ejection-time": "1500ms",
            "knserve.dev/outlier-max-ejection-percent": "50",
            "knserve.dev/outlier-interval": "1m",
        }
    )
    assert config == OutlierDetection(3, 2, 1.5, 50, 60.0)
    assert OutlierDetection.from_annotations({}) == OutlierDetection(5, 0, 30.0, 10, 10.0)


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("consecutive-5xx-errors", "five", "give a whole number, 0 or more"),
        ("consecutive-gateway-errors", "-1", "give a whole number, 0 or more"),
        ("max-ejection-percent", "120", "give a percentage from 0 to 100"),
        ("base-ejection-time", "30", "give a positive duration such as 500ms, 30s or 2m"),
        ("interval", "0s", "give a positive duration"),
    ],
)
def test_bad_annotations_are_refused_with_what_to_write(key: str, value: str, says: str) -> None:
    name = "knserve.dev/outlier-" + key
    with pytest.raises(ValueError, match=says):
        OutlierDetection.from_annotations({name: value})
    errors = outlier_annotation_errors({name: value}, "spec.template.metadata.annotations")
    assert len(errors) == 1
    assert errors[0].startswith(f"spec.template.metadata.annotations: {name} is {value!r}")


def test_an_unknown_outlier_annotation_is_named() -> None:
    errors = outlier_annotation_errors({"knserve.dev/outlier-consecutive-5xx": "3"}, "m")
    assert errors == [
        "m: unknown annotation knserve.dev/outlier-consecutive-5xx; the outlier annotations are "
        "knserve.dev/outlier-consecutive-5xx-errors, knserve.dev/outlier-consecutive-gateway-errors, "
        "knserve.dev/outlier-base-ejection-time, knserve.dev/outlier-max-ejection-percent, "
        "knserve.dev/outlier-interval"
    ]


async def test_the_control_api_refuses_a_bad_outlier_annotation_and_stores_a_good_one(
    tmp_path: Path,
) -> None:
    def service(value: str) -> dict[str, Any]:
        annotations = {"knserve.dev/outlier-base-ejection-time": value}
        containers = [{"image": "python", "command": ["python", "-m", "http.server", "$(PORT)"]}]
        template = {"metadata": {"annotations": annotations}, "spec": {"containers": containers}}
        return {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                "metadata": {"name": "hello"}, "spec": {"template": template}}  # fmt: skip

    store = Store(tmp_path / "state.db")
    path = "/apis/serving.knative.dev/v1/namespaces/default/services"
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        refused = await client.post(path, json=service("thirty"))
        assert refused.status_code == 422, refused.text
        assert (
            "spec.template.metadata.annotations: knserve.dev/outlier-base-ejection-time is "
            "'thirty'; give a positive duration such as 500ms, 30s or 2m"
        ) in refused.json()["message"]
        assert (await client.post(path, json=service("2s"))).status_code == 201
    store.close()
