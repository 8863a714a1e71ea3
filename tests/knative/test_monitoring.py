"""The plane's monitoring pieces on their own: discovery targets, the scrape config, the
dashboard's samples and the per-component metrics routes."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
import yaml
from net_fixtures import serve_in_thread
from prometheus_client.core import GaugeMetricFamily
from starlette.applications import Starlette

from knserve.knative.monitoring.plane_metrics import metrics_routes
from knserve.knative.monitoring.samples import Reading, SampleRing
from knserve.knative.monitoring.scrape_config import write_scrape_config
from knserve.knative.monitoring.targets import targets


def revision(name: str, **labels: str) -> dict[str, object]:
    return {"metadata": {"namespace": "default", "name": name, "labels": labels}}


def test_targets_list_ready_replicas_with_their_labels_then_the_plane() -> None:
    revisions = [
        revision(
            "iris-predictor-00001",
            **{
                "serving.knative.dev/service": "iris-predictor",
                "serving.knative.dev/configuration": "iris-predictor",
                "serving.kserve.io/inferenceservice": "iris",
                "component": "predictor",
            },
        ),
        revision("echo-00001", **{"serving.knative.dev/service": "echo"}),
        revision("cold-00001", **{"serving.knative.dev/service": "cold"}),
    ]
    ready = {
        "iris-predictor-00001": ("127.0.0.1:5001", "127.0.0.1:5002"),
        "echo-00001": ("127.0.0.1:6001",),
    }
    groups = targets(revisions, lambda ns, rev: ready.get(rev, ()), "127.0.0.1:8081")
    iris = {
        "namespace": "default",
        "service": "iris-predictor",
        "configuration": "iris-predictor",
        "revision": "iris-predictor-00001",
        "inferenceservice": "iris",
        "model": "iris",
        "component": "predictor",
    }
    assert groups[:3] == [
        {"targets": ["127.0.0.1:5001"], "labels": iris},
        {"targets": ["127.0.0.1:5002"], "labels": iris},
        {
            "targets": ["127.0.0.1:6001"],
            "labels": {"namespace": "default", "service": "echo", "revision": "echo-00001"},
        },
    ]
    # the revision at zero has no target; the plane's parts are on the control API
    assert groups[3:] == [
        {
            "targets": ["127.0.0.1:8081"],
            "labels": {"component": c, "__metrics_path__": f"/metrics/{c}"},
        }
        for c in ("activator", "autoscaler", "broker")
    ]


def test_the_scrape_config_discovers_through_the_control_api_and_keeps_its_token_private(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "plain.yml"
    write_scrape_config(plain, "http://127.0.0.1:8081")
    job = yaml.safe_load(plain.read_text())["scrape_configs"][0]
    assert job["http_sd_configs"] == [
        {"url": "http://127.0.0.1:8081/prometheus/targets", "refresh_interval": "5s"}
    ]
    assert "authorization" not in job
    secret = tmp_path / "secret.yml"
    write_scrape_config(secret, "http://127.0.0.1:9081/", token="s3cret")
    job = yaml.safe_load(secret.read_text())["scrape_configs"][0]
    bearer = {"type": "Bearer", "credentials": "s3cret"}
    assert job["authorization"] == job["http_sd_configs"][0]["authorization"] == bearer
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_samples_turn_counters_into_rates_and_mean_latency_and_stay_bounded() -> None:
    ring = SampleRing(capacity=3)
    ring.add(100.0, {"default/a": Reading(10, 10, 50.0, 1, 1)})
    ring.add(102.0, {"default/a": Reading(30, 30, 250.0, 2, 1)})
    ring.add(
        104.0, {"default/a": Reading(30, 30, 250.0, 2, 2), "default/b": Reading(5, 5, 5.0, 1, 1)}
    )
    ring.add(106.0, {"default/a": Reading(0, 0, 0.0, 1, 1)})  # recreated: counters restarted
    points = ring.series()
    assert [p["time"] for p in points] == [102.0, 104.0, 106.0]
    assert points[0]["revisions"]["default/a"] == {
        "rps": 10.0,
        "latency_ms": 10.0,
        "desired": 2,
        "ready": 1,
    }
    assert points[1]["revisions"]["default/a"]["rps"] == 0.0
    assert points[1]["revisions"]["default/a"]["latency_ms"] is None  # nothing answered
    assert points[1]["revisions"]["default/b"]["rps"] is None  # no earlier reading
    assert points[2]["revisions"]["default/a"]["rps"] is None


class One:
    def __init__(self, name: str) -> None:
        self.name = name

    def collect(self):  # type: ignore[no-untyped-def]
        yield GaugeMetricFamily(self.name, "a test gauge", value=1)


@pytest.fixture
def metrics_url() -> object:
    app = Starlette(
        routes=metrics_routes({"activator": [One("a_gauge")], "broker": [One("b_gauge")]})
    )
    with serve_in_thread(app) as url:
        yield url


def test_metrics_serve_everything_and_each_component_alone(metrics_url: str) -> None:
    everything = httpx.get(f"{metrics_url}/metrics").text
    assert "a_gauge 1.0" in everything and "b_gauge 1.0" in everything
    broker = httpx.get(f"{metrics_url}/metrics/broker").text
    assert "b_gauge 1.0" in broker and "a_gauge" not in broker
    unknown = httpx.get(f"{metrics_url}/metrics/gateway")
    assert unknown.status_code == 404
    assert unknown.text == "no metrics component 'gateway'; the plane has: activator, broker\n"
