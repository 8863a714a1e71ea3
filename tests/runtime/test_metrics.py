"""Prometheus metrics: KServe's histogram names and labels, plus requests by status."""

from __future__ import annotations

import pytest
from model_fixtures import train_sklearn_iris
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from runtime_fixtures import model_settings, serving


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.fixture(scope="module")
def iris_dir(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("iris")
    train_sklearn_iris(folder)
    return folder


async def test_kserve_histograms_and_request_counts(iris_dir) -> None:  # type: ignore[no-untyped-def]
    async with serving(model_settings("iris", iris_dir)) as (client, _):
        for _ in range(3):
            await client.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]})
        await client.post("/v1/models/iris:predict", json={"instances": [[1, 2]]})  # 400
        body = {
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]
        }
        await client.post("/v2/models/iris/infer", json=body)
        response = await client.get("/metrics")
    assert response.status_code == 200
    got = samples(response.text)
    model = (("model_name", "iris"),)
    for name in (
        "request_preprocess_seconds",
        "request_predict_seconds",
        "request_postprocess_seconds",
    ):
        assert got[(f"{name}_count", model)] == 4  # three V1 and one V2 reached the model
    assert (
        got[
            (
                "knserve_requests_total",
                (("code", "200"), ("model_name", "iris"), ("protocol", "v1")),
            )
        ]
        == 3
    )
    assert (
        got[
            (
                "knserve_requests_total",
                (("code", "400"), ("model_name", "iris"), ("protocol", "v1")),
            )
        ]
        == 1
    )
    assert (
        got[
            (
                "knserve_requests_total",
                (("code", "200"), ("model_name", "iris"), ("protocol", "v2")),
            )
        ]
        == 1
    )
    assert (
        got[
            ("knserve_request_duration_seconds_count", (("model_name", "iris"), ("protocol", "v1")))
        ]
        == 4
    )
    assert got[("knserve_models_ready", ())] == 1


async def test_batcher_and_cache_counters_appear_when_enabled(iris_dir) -> None:  # type: ignore[no-untyped-def]
    settings = model_settings(
        "iris", iris_dir, max_batch_size=8, max_latency_ms=1, cache_entries=10
    )
    async with serving(settings) as (client, _):
        for _ in range(2):
            await client.post("/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]})
        got = samples((await client.get("/metrics")).text)
    model = (("model_name", "iris"),)
    assert got[("knserve_cache_hits_total", model)] == 1
    assert got[("knserve_cache_misses_total", model)] == 1
    assert got[("knserve_batched_requests_total", model)] == 1  # the hit never reached the batcher


def test_deferred_observations_reach_the_histogram_on_scrape_or_when_many() -> None:
    from knserve.runtime import metrics as m

    registry = m.Metrics()
    model = registry.model("iris")
    model.predict.observe(0.5)
    model.request("v2", 200, 0.25)
    model.request("v2", 200, 0.25)
    got = samples(registry.render().decode())
    assert got[("request_predict_seconds_count", (("model_name", "iris"),))] == 1
    assert got[("request_predict_seconds_sum", (("model_name", "iris"),))] == 0.5
    labels = (("code", "200"), ("model_name", "iris"), ("protocol", "v2"))
    assert got[("knserve_requests_total", labels)] == 2
    # unscraped, the pending list is folded in once it is long: memory stays bounded
    for _ in range(m._FOLD_AT):
        model.preprocess.observe(0.001)
    child = registry.preprocess.labels(model_name="iris")
    assert child._sum.get() == pytest.approx(m._FOLD_AT * 0.001)
    assert len(model.preprocess._pending) == 0


def test_a_fold_counts_each_value_in_the_bucket_observe_would() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    from knserve.runtime import metrics as m

    registry = CollectorRegistry()
    folded = Histogram("folded", "f", ["m"], registry=registry, buckets=(0.1, 0.5, 1.0))
    observed = Histogram("observed", "o", ["m"], registry=registry, buckets=(0.1, 0.5, 1.0))
    values = [0.0, 0.05, 0.1, 0.1000001, 0.5, 0.7, 1.0, 3.0, 1e9, 0.2, 0.1]  # bounds included
    deferred = m.Deferred(folded.labels("x"))
    for v in values:
        deferred.observe(v)
        observed.labels("x").observe(v)
    deferred.fold()
    got = samples(generate_latest(registry).decode())
    for (name, labels), value in got.items():
        if name.startswith("observed") and not name.endswith("_created"):
            assert got[(name.replace("observed", "folded"), labels)] == pytest.approx(value), name
