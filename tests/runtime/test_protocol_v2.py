"""The V2 Open Inference Protocol: metadata, every datatype, shapes, outputs, ids, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_fixtures import train_onnx_two_inputs, train_sklearn_iris
from runtime_fixtures import model_settings, serving

from knserve.runtime import InferRequest, InferResponse, Model
from knserve.runtime.protocols.v2 import InferOutput


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("iris")
    model, x = train_sklearn_iris(folder)
    return folder, model, x


def v2_body(x: np.ndarray, datatype: str = "FP32", **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "shape": list(x.shape),
                "datatype": datatype,
                "data": x.ravel().tolist(),
            }
        ],
        **extra,
    }


async def test_infer_equals_sklearn_and_echoes_the_id(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, model, x = iris_model
    async with serving(model_settings("iris", folder)) as (client, _):
        response = await client.post("/v2/models/iris/infer", json=v2_body(x[:5], id="req-7"))
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == "req-7" and body["model_name"] == "iris"
        (out,) = body["outputs"]
        # KServe's sklearnserver names its one output output-0 (utils.py, get_predict_response)
        assert (out["name"], out["datatype"], out["shape"]) == ("output-0", "INT64", [5])
        assert out["data"] == model.predict(x[:5].astype(np.float32)).tolist()


async def test_requested_outputs_and_nested_data(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, model, x = iris_model
    async with serving(model_settings("iris", folder)) as (client, _):
        body = {
            "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": x[:2].tolist()}],
            "outputs": [{"name": "predict_proba"}, {"name": "predict"}],
        }
        outputs = (await client.post("/v2/models/iris/infer", json=body)).json()["outputs"]
        assert [o["name"] for o in outputs] == ["predict_proba", "predict"]
        assert outputs[0]["shape"] == [2, 3]
        np.testing.assert_allclose(
            np.reshape(outputs[0]["data"], (2, 3)), model.predict_proba(x[:2])
        )
        unknown = await client.post(
            "/v2/models/iris/infer", json={**body, "outputs": [{"name": "logits"}]}
        )
        assert unknown.status_code == 400
        assert "'output-0', 'predict', 'predict_proba'" in unknown.json()["error"]


async def test_metadata_ready_server_and_versions(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = iris_model
    async with serving(model_settings("iris", folder)) as (client, _):
        meta = (await client.get("/v2/models/iris")).json()
        assert meta["platform"] == "sklearn"
        assert meta["inputs"] == [{"name": "input-0", "datatype": "FP32", "shape": [-1, 4]}]
        assert (await client.get("/v2/models/iris/ready")).json() == {"name": "iris", "ready": True}
        assert (await client.get("/v2/health/live")).status_code == 200
        assert (await client.get("/v2/health/ready")).status_code == 200
        server = (await client.get("/v2")).json()
        assert server["name"] == "knserve" and "binary_tensor_data" in server["extensions"]
        versioned = await client.post(
            "/v2/models/iris/versions/1/infer", json=v2_body(np.ones((1, 4)))
        )
        assert versioned.status_code == 200
        assert (await client.get("/v2/models/nope")).status_code == 404


class Echo(Model):
    """Returns its input tensors unchanged: every datatype round-trips through the protocol."""

    def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        return InferResponse(self.name, [InferOutput(i.name, i.data) for i in payload.inputs])


DATATYPE_CASES = [
    ("BOOL", [True, False, True, True], [2, 2]),
    ("UINT8", [0, 255, 7, 8], [4]),
    ("UINT16", [0, 65535], [2]),
    ("UINT32", [0, 4294967295], [2, 1]),
    ("UINT64", [0, 18446744073709551615], [2]),
    ("INT8", [-128, 127], [2]),
    ("INT16", [-32768, 32767], [2]),
    ("INT32", [-2147483648, 2147483647], [1, 2]),
    ("INT64", [-9223372036854775808, 9223372036854775807], [2]),
    ("FP16", [0.5, -1.25], [2]),
    ("FP32", [1.5, 2.25, -3.0, 0.0], [2, 2]),
    ("FP64", [1e-300, 1e300], [2]),
    ("BYTES", ["hello", "wörld"], [2]),
]


@pytest.mark.parametrize(
    ("datatype", "data", "shape"), DATATYPE_CASES, ids=[c[0] for c in DATATYPE_CASES]
)
async def test_every_datatype_round_trips(datatype: str, data: list[Any], shape: list[int]) -> None:
    async with serving(models=[Echo("echo")]) as (client, _):
        body = {"inputs": [{"name": "t", "shape": shape, "datatype": datatype, "data": data}]}
        response = await client.post("/v2/models/echo/infer", json=body)
        assert response.status_code == 200, response.text
        (out,) = response.json()["outputs"]
        assert (out["datatype"], out["shape"], out["data"]) == (datatype, shape, data)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        pytest.param(
            {"datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]},
            "4 elements) but 3",
            id="length",
        ),
        pytest.param(
            {"datatype": "FP31", "shape": [1], "data": [1]}, "must be one of BOOL", id="datatype"
        ),
        pytest.param(
            {"datatype": "INT32", "shape": [1], "data": [1.5]},
            "must be integers",
            id="float-as-int",
        ),
        pytest.param({"datatype": "UINT8", "shape": [1], "data": [256]}, "[0, 255]", id="overflow"),
        pytest.param(
            {"datatype": "BOOL", "shape": [1], "data": [1]}, "true or false", id="int-as-bool"
        ),
        pytest.param(
            {"datatype": "FP32", "shape": [1], "data": ["x"]},
            "must be numbers",
            id="string-as-float",
        ),
        pytest.param(
            {"datatype": "BYTES", "shape": [1], "data": [1]}, "must be strings", id="int-as-bytes"
        ),
        pytest.param(
            {"datatype": "FP32", "shape": [-1], "data": [1]}, "non-negative", id="negative-shape"
        ),
        pytest.param({"datatype": "FP32", "shape": [1]}, 'no "data"', id="no-data"),
        pytest.param(
            {"datatype": "FP32", "shape": [2], "data": [[1], [2, 3]]}, "ragged", id="ragged"
        ),
    ],
)
async def test_malformed_tensors_are_400_with_the_input_named(
    tensor: dict[str, Any], message: str
) -> None:
    async with serving(models=[Echo("echo")]) as (client, _):
        response = await client.post(
            "/v2/models/echo/infer", json={"inputs": [{"name": "t", **tensor}]}
        )
        assert response.status_code == 400
        error = response.json()["error"]
        assert message in error
        assert "'t'" in error or "t" in error


async def test_multi_input_onnx_matches_inputs_by_name(tmp_path: Path) -> None:
    train_onnx_two_inputs(tmp_path)
    async with serving(model_settings("two", tmp_path)) as (client, _):
        a, b = [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]
        body = {
            "inputs": [  # given in the reverse order of the graph's
                {"name": "b", "shape": [1, 3], "datatype": "FP32", "data": b},
                {"name": "a", "shape": [1, 3], "datatype": "FP32", "data": a},
            ],
            "outputs": [{"name": "prod"}],
        }
        (out,) = (await client.post("/v2/models/two/infer", json=body)).json()["outputs"]
        assert out["data"] == [2.0, 4.0, 6.0]
        missing = await client.post("/v2/models/two/infer", json={"inputs": body["inputs"][:1]})
        assert missing.status_code == 400
        assert "takes inputs 'a', 'b'" in missing.json()["error"]


def test_made_up_request_ids_are_distinct_uuid4s() -> None:
    import uuid

    from knserve.runtime.request_path import new_id

    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:200]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
