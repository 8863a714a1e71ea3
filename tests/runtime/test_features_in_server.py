"""Batching, the response cache and the payload logger switched on through the server's settings."""

from __future__ import annotations

import asyncio

import pytest
from model_fixtures import train_sklearn_iris
from runtime_fixtures import model_settings, serving


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("iris")
    model, x = train_sklearn_iris(folder)
    return folder, model, x


async def test_concurrent_v1_and_v2_requests_are_batched_and_answered_in_order(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, model, x = iris_model
    settings = model_settings("iris", folder, max_batch_size=64, max_latency_ms=50)
    async with serving(settings) as (client, app):
        rows = x[::7]
        v1 = [
            client.post("/v1/models/iris:predict", json={"instances": [r.tolist()]}) for r in rows
        ]
        v2 = [
            client.post("/v2/models/iris/infer", json={"id": f"r{i}", "inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": r.tolist()}]})
            for i, r in enumerate(rows)
        ]  # fmt: skip
        answers = await asyncio.gather(*v1, *v2)
        stats = app.repository.get("iris").batcher.stats
    expected = model.predict(rows).tolist()
    assert [a.json()["predictions"][0] for a in answers[: len(rows)]] == expected
    v2_answers = [a.json() for a in answers[len(rows) :]]
    assert [a["outputs"][0]["data"][0] for a in v2_answers] == expected
    assert [a["id"] for a in v2_answers] == [f"r{i}" for i in range(len(rows))]
    assert stats.requests == 2 * len(rows)
    assert stats.batches < stats.requests  # requests shared model calls


async def test_the_cache_answers_repeats_and_still_echoes_each_v2_id(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = iris_model
    async with serving(model_settings("iris", folder, cache_entries=8)) as (client, app):
        body = {
            "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]
        }
        first = await client.post("/v2/models/iris/infer", json={**body, "id": "a"})
        second = await client.post("/v2/models/iris/infer", json={**body, "id": "b"})
        stats = app.repository.get("iris").cache.stats
    assert first.json()["outputs"] == second.json()["outputs"]
    assert (first.json()["id"], second.json()["id"]) == ("a", "b")
    assert (stats.hits, stats.misses) == (1, 1)
