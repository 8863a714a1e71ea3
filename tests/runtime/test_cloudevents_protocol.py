"""CloudEvents carrying V1/V2 requests, answered as CloudEvents in the request's mode."""

from __future__ import annotations

import orjson
import pytest
from model_fixtures import train_sklearn_iris
from runtime_fixtures import model_settings, serving

from knserve.runtime.protocols.cloudevents import reply_id
from knserve.runtime.protocols.cloudevents_sdk import (
    CloudEvent,
    from_http,
    to_binary,
    to_structured,
)


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("iris")
    model, x = train_sklearn_iris(folder)
    return folder, model, x


def event(data: dict, source: str = "test", event_id: str = "evt-42", **extra: str) -> CloudEvent:
    return CloudEvent(
        {"type": "io.kserve.inference.request", "source": source, "id": event_id, **extra}, data
    )


@pytest.mark.parametrize("mode", ["binary", "structured"])
async def test_v1_request_event_gets_a_response_event_in_the_same_mode(
    iris_model, mode: str
) -> None:  # type: ignore[no-untyped-def]
    folder, model, x = iris_model
    encode = to_binary if mode == "binary" else to_structured
    headers, body = encode(event({"instances": x[:2].tolist()}))
    async with serving(model_settings("iris", folder)) as (client, _):
        response = await client.post("/v1/models/iris:predict", headers=headers, content=body)
    assert response.status_code == 200
    if mode == "binary":
        assert response.headers["ce-type"] == "io.kserve.inference.response"
    else:
        assert response.headers["content-type"].startswith("application/cloudevents+json")
    answer = from_http(dict(response.headers), response.content)
    assert answer["type"] == "io.kserve.inference.response"
    assert answer["source"] == "io.kserve.inference.iris"
    assert answer["kserverequestid"] == "evt-42"
    assert answer["kserverequestsource"] == "test"
    assert answer["id"] == reply_id("test", "evt-42") != "evt-42"
    data = answer.data if isinstance(answer.data, dict) else orjson.loads(answer.data)
    assert data == {"predictions": model.predict(x[:2]).tolist()}


async def test_v2_request_event(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, model, x = iris_model
    v2 = {
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": x[0].tolist()}]
    }
    headers, body = to_binary(event(v2))
    async with serving(model_settings("iris", folder)) as (client, _):
        response = await client.post("/v2/models/iris/infer", headers=headers, content=body)
    assert response.status_code == 200
    data = orjson.loads(response.content)
    assert data["outputs"][0]["data"] == model.predict(x[:1]).tolist()


async def test_replies_to_equal_ids_from_two_sources_differ_and_a_redelivery_repeats_its_id(
    iris_model,
) -> None:  # type: ignore[no-untyped-def]
    """(source, id) identifies an event: a broker de-duplicates on it, so replies must too."""
    folder, _, x = iris_model
    sent = [("camera-a", "1", "cat.png"), ("camera-b", "1", None), ("camera-a", "1", "cat.png")]
    answers = []
    async with serving(model_settings("iris", folder)) as (client, _):
        for source, event_id, subject in sent:
            extra = {"subject": subject} if subject else {}
            headers, body = to_binary(
                event({"instances": x[:1].tolist()}, source, event_id, **extra)
            )
            response = await client.post("/v1/models/iris:predict", headers=headers, content=body)
            assert response.status_code == 200
            answers.append(from_http(dict(response.headers), response.content))
    first, other, again = answers
    assert first["id"] != other["id"]
    assert again["id"] == first["id"]
    assert [a["kserverequestsource"] for a in answers] == ["camera-a", "camera-b", "camera-a"]
    assert first["subject"] == "cat.png"
    assert other.get("subject") is None


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        pytest.param(
            {"ce-specversion": "1.0", "ce-source": "s", "ce-type": "t"}, "ce-id", id="no-id"
        ),
        pytest.param(
            {"ce-specversion": "1.0", "ce-id": "1", "ce-type": "t"}, "ce-source", id="no-source"
        ),
        pytest.param(
            {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "s"}, "ce-type", id="no-type"
        ),
    ],
)
async def test_an_event_missing_attributes_is_400_naming_them(
    iris_model, headers: dict, message: str
) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = iris_model
    async with serving(model_settings("iris", folder)) as (client, _):
        response = await client.post(
            "/v1/models/iris:predict",
            headers={**headers, "content-type": "application/json"},
            content=b'{"instances": [[1, 2, 3, 4]]}',
        )
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_an_event_whose_data_is_not_a_request_is_400(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = iris_model
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "s",
        "ce-type": "t",
        "content-type": "text/plain",
    }
    async with serving(model_settings("iris", folder)) as (client, _):
        response = await client.post("/v1/models/iris:predict", headers=headers, content=b"hello")
    assert response.status_code == 400
    assert "JSON inference request" in response.json()["error"]
