"""A real Prometheus scraping a real plane, as a KServe user wires it: `knserve up --prometheus`
writes the config, Prometheus finds every replica and the plane's parts by HTTP service discovery,
and PromQL over its HTTP API answers what a user asks (each revision's request rate, the model's
p99 latency, the replica counts), and every panel of the Grafana dashboard in knative/deploy/ has
data. The load makes each series exist: a cold start, a batcher, the response cache, errors, an
event delivered through the broker and one dead-lettered.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from broker_fixtures import broker, ready, send, trigger
from net_fixtures import ServerProcess, eventually
from plane_fixtures import FAST_AUTOSCALER, LocalPlane
from prometheus_fixtures import start_prometheus

import knserve.knative
from knserve.knative.kserve.example import example_inferenceservice

pytestmark = pytest.mark.slow

HOST = "sklearn-iris.default.localhost"
PREDICTOR = "sklearn-iris-predictor-00001"
SETOSA = [6.8, 2.8, 4.8, 1.4]
DASHBOARD = Path(knserve.knative.__file__).parent / "deploy" / "grafana-dashboard.json"


def iris(model_dir: Path) -> dict[str, Any]:
    """KServe's iris example scaled to zero when idle, with the batcher and the response cache."""
    isvc = example_inferenceservice(model_dir)
    predictor = isvc["spec"]["predictor"]
    predictor["minReplicas"] = 0
    predictor["batcher"] = {"maxBatchSize": 8, "maxLatency": 20}
    predictor["model"]["env"] = [{"name": "KNSERVE_CACHE_ENTRIES", "value": "64"}]
    return isvc


def panels() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of the Grafana dashboard."""
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def predict(plane: LocalPlane, variant: int = 0) -> int:
    """One prediction of iris `variant`: a new variant misses the response cache (and goes to the
    batcher), one seen before hits it."""
    body = {"instances": [[*SETOSA[:3], SETOSA[3] + variant / 1000]]}
    return plane.call(HOST, "/v1/models/sklearn-iris:predict", "POST", json=body).status_code


@contextlib.contextmanager
def load(plane: LocalPlane) -> Iterator[None]:
    """Predictions through the gateway until the block ends (bounded: 300 rounds of 4 at once
    every quarter second, so the batcher batches and the
    predictor stays up), and a malformed one (400) each round."""
    stop = threading.Event()
    codes: list[int] = []

    def rounds() -> None:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for n in range(300):
                # two new variants (to the batcher together) and two seen (cache hits)
                variants = [2 * n + 1, 2 * n + 2, 0, 0]
                codes.extend(pool.map(lambda v: predict(plane, v), variants))
                bad = plane.call(HOST, "/v1/models/sklearn-iris:predict", "POST", content=b"{no")
                codes.append(bad.status_code)
                if stop.wait(0.25):  # a steady rate, as a user's traffic has
                    return

    sender = threading.Thread(target=rounds, daemon=True)
    sender.start()
    try:
        yield
    finally:
        stop.set()
        sender.join(30)
    assert set(codes) == {200, 400}, sorted(set(codes))


@pytest.fixture
def observed_plane(spawn: Callable[..., ServerProcess], tmp_path: Path) -> Any:
    config = tmp_path / "prometheus.yml"
    plane = LocalPlane(spawn, tmp_path / "plane", [*FAST_AUTOSCALER, "--prometheus", str(config)])
    yield plane, config
    plane.close()


def test_prometheus_finds_the_plane_and_answers_for_every_revision_model_and_panel(
    observed_plane: tuple[LocalPlane, Path],
    spawn: Callable[..., ServerProcess],
    tmp_path: Path,
    sklearn_iris_dir: Path,
) -> None:
    plane, config_file = observed_plane
    config = yaml.safe_load(config_file.read_text())
    job = config["scrape_configs"][0]
    discovery = job["http_sd_configs"][0]
    assert discovery["url"] == f"{plane.api}/prometheus/targets"
    # the config as written, with intervals shortened so the test waits seconds, not minutes
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    discovery["refresh_interval"] = "1s"
    prometheus = start_prometheus(spawn, config, tmp_path / "prometheus")

    ready(
        plane,
        tmp_path,
        iris(sklearn_iris_dir),
        broker(),
        broker("dead-letters"),
        trigger(
            "to-model",
            {
                "ref": {
                    "apiVersion": "serving.kserve.io/v1beta1",
                    "kind": "InferenceService",
                    "name": "sklearn-iris",
                },
                "uri": "/v1/models/sklearn-iris:predict",
            },
            filter={"attributes": {"type": "iris.request"}},
        ),
        trigger(
            "to-nowhere",
            {"uri": "http://127.0.0.1:1/"},  # nothing listens on port 1: every attempt fails
            filter={"attributes": {"type": "iris.lost"}},
            delivery={
                "retry": 0,
                "deadLetterSink": {"uri": f"{plane.broker}/default/dead-letters"},
            },
        ),
    )
    plane.wait_ready("inferenceservices", "sklearn-iris", timeout=120)
    # scaled to zero (a 6 s stable window), so the first prediction below is a cold start
    plane.wait_scaled_to_zero(PREDICTOR)
    assert predict(plane) == 200  # the cold start
    # rate() needs two samples apart: the load starts once Prometheus has scraped the new
    # replica (its batcher's counters, at 0 before any batch) and the gateway's series
    prometheus.wait_for('knserve_batches_total{model="sklearn-iris"}')
    prometheus.wait_for(f'activator_request_count{{revision_name="{PREDICTOR}"}}')
    with load(plane):  # until every answer is in
        send(plane, "to-model-1", "iris.request", {"instances": [SETOSA]})
        send(plane, "lost-1", "iris.lost", {"instances": [SETOSA]})

        # discovery: the replica with its InferenceService labels, and the plane's parts, all up
        def scraped(component: str) -> list[dict[str, Any]]:
            return [
                t
                for t in prometheus.targets()
                if t["labels"].get("component") == component and t["health"] == "up"
            ]

        predictors = eventually(lambda: scraped("predictor"), 30, lambda: str(prometheus.targets()))
        assert (
            predictors[0]["labels"]
            | {
                "namespace": "default",
                "service": "sklearn-iris-predictor",
                "configuration": "sklearn-iris-predictor",
                "revision": PREDICTOR,
                "inferenceservice": "sklearn-iris",
                "model": "sklearn-iris",
            }
            == predictors[0]["labels"]
        )
        for part in ("activator", "autoscaler", "broker"):
            eventually(lambda part=part: scraped(part), 30, lambda: str(prometheus.targets()))

        # what a user asks: each revision's request rate, the model's p99, the replica counts
        rates = prometheus.wait_for(
            "sum by (namespace_name, revision_name) (rate(activator_request_count[1m]))",
            lambda r: any(
                s["metric"]["revision_name"] == PREDICTOR and float(s["value"][1]) > 0 for s in r
            ),
        )
        assert {s["metric"]["namespace_name"] for s in rates} >= {"default"}
        p99 = prometheus.wait_for(
            'histogram_quantile(0.99, sum by (le) (rate(knserve_request_duration_seconds_bucket{model="sklearn-iris"}[1m])))'
        )
        assert 0 < float(p99[0]["value"][1]) < 10
        actual = prometheus.wait_for(
            f'knserve_revision_actual_pods{{revision="{PREDICTOR}"}}',
            lambda r: float(r[0]["value"][1]) >= 1,
        )
        assert actual[0]["metric"]["component"] == "autoscaler"
        prometheus.wait_for(f'knserve_revision_desired_pods{{revision="{PREDICTOR}"}}')
        prometheus.wait_for(
            f'knserve_revision_cold_starts_total{{revision="{PREDICTOR}"}}',
            lambda r: float(r[0]["value"][1]) >= 1,
        )
        prometheus.wait_for(
            'knserve_trigger_events_dead_lettered_total{trigger_name="to-nowhere"}',
            lambda r: float(r[0]["value"][1]) >= 1,
        )
        prometheus.wait_for(
            'knserve_trigger_events_delivered_total{trigger_name="to-model"}',
            lambda r: float(r[0]["value"][1]) >= 1,
        )

        # every panel of the Grafana dashboard has data (the load is within their windows)
        for title, expr in panels():
            assert prometheus.wait_for(expr, timeout=30), title
