"""Batching, the response cache and the payload logger switched on through the server's settings."""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
import pytest
from model_fixtures import train_sklearn_iris
from net_fixtures import serve_in_loop
from runtime_fixtures import model_settings, serving

from knserve.runtime.asgi import read_body
from knserve.runtime.protocols.cloudevents_sdk import CloudEvent, from_http, to_binary


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("iris")
    model, x = train_sklearn_iris(folder)
    return folder, model, x


async def test_concurrent_v1_v2_and_cloudevents_requests_are_batched_and_answered_in_order(
    iris_model,
) -> None:  # type: ignore[no-untyped-def]
    folder, model, x = iris_model
    settings = model_settings("iris", folder, max_batch_size=64, max_latency_ms=50)
    async with serving(settings) as (client, app):
        rows = x[::7]
        v1 = [
            client.post("/v1/models/iris:predict", json={"instances": [r.tolist()]}) for r in rows
        ]
        v2 = [
            client.post(
                "/v2/models/iris/infer",
                json={
                    "id": f"r{i}",
                    "inputs": [
                        {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": r.tolist()}
                    ],
                },
            )
            for i, r in enumerate(rows)
        ]
        events = [
            to_binary(
                CloudEvent({"type": "t", "source": "s", "id": f"e{i}"}, {"instances": [r.tolist()]})
            )
            for i, r in enumerate(rows)
        ]
        ce = [
            client.post("/v1/models/iris:predict", headers=headers, content=body)
            for headers, body in events
        ]
        answers = await asyncio.gather(*v1, *v2, *ce)
        stats = app.repository.get("iris").batcher.stats
    n = len(rows)
    expected = model.predict(rows).tolist()
    assert [a.json()["predictions"][0] for a in answers[:n]] == expected
    v2_answers = [a.json() for a in answers[n : 2 * n]]
    assert [a["outputs"][0]["data"][0] for a in v2_answers] == expected
    assert [a["id"] for a in v2_answers] == [f"r{i}" for i in range(n)]
    ce_answers = [from_http(dict(a.headers), a.content) for a in answers[2 * n :]]
    assert [a["kserverequestid"] for a in ce_answers] == [f"e{i}" for i in range(n)]
    ce_data = [a.data if isinstance(a.data, dict) else orjson.loads(a.data) for a in ce_answers]
    assert [d["predictions"][0] for d in ce_data] == expected
    assert stats.requests == 3 * n
    assert stats.batches < stats.requests  # requests shared model calls


async def test_a_request_the_model_refuses_fails_alone_and_its_batch_is_answered(
    iris_model,
) -> None:  # type: ignore[no-untyped-def]
    folder, model, x = iris_model
    settings = model_settings("iris", folder, max_batch_size=64, max_latency_ms=50)
    # NaN cannot be written in JSON, but the binary tensor extension carries it to the model,
    # which refuses it (scikit-learn: "Input X contains NaN") only once the batch is predicted.
    nan = np.array([[np.nan, 1.0, 1.0, 1.0]]).tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [1, 4],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(nan)},
                }
            ]
        }
    )
    async with serving(settings) as (client, app):
        good = [
            client.post("/v1/models/iris:predict", json={"instances": [r.tolist()]}) for r in x[:5]
        ]
        bad = client.post(
            "/v2/models/iris/infer",
            content=header + nan,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        *answers, refused = await asyncio.gather(*good, bad)
        stats = app.repository.get("iris").batcher.stats
    assert [a.json()["predictions"][0] for a in answers] == model.predict(x[:5]).tolist()
    assert refused.status_code == 400
    assert "NaN" in refused.json()["error"]
    assert stats.split_retries == 1


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


async def test_a_cached_answer_is_logged_like_any_other(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = iris_model
    received: list[tuple[str, str]] = []
    arrived = asyncio.Event()

    async def sink(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await read_body(receive)
        headers = dict(scope["headers"])
        received.append((headers[b"ce-id"].decode(), headers[b"ce-type"].decode()))
        if len(received) == 4:
            arrived.set()
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with serve_in_loop(sink) as url:
        settings = model_settings("iris", folder, cache_entries=8, logger_url=url)
        async with serving(settings) as (client, app):
            for request_id in ("first", "again"):
                answer = await client.post(
                    "/v1/models/iris:predict",
                    json={"instances": [[1, 2, 3, 4]]},
                    headers={"x-request-id": request_id},
                )
                assert answer.status_code == 200
            await asyncio.wait_for(arrived.wait(), 10)
            assert app.repository.get("iris").cache.stats.hits == 1
    kinds = ("org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response")
    assert sorted(received) == sorted((i, k) for i in ("first", "again") for k in kinds)
