"""KServe V1 over the real app: listing, status, predict, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from model_fixtures import train_sklearn_iris
from runtime_fixtures import model_settings, serving


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("iris")
    model, x = train_sklearn_iris(folder)
    return folder, model, x


async def test_predict_equals_sklearn_predict(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, model, x = iris_model
    async with serving(model_settings("iris", folder)) as (client, _):
        response = await client.post(
            "/v1/models/iris:predict", json={"instances": x[::10].tolist()}
        )
        assert response.status_code == 200
        assert response.json() == {"predictions": model.predict(x[::10]).tolist()}
        # KServe also accepts "inputs" for the rows
        alias = await client.post("/v1/models/iris:predict", json={"inputs": x[:2].tolist()})
        assert alias.json()["predictions"] == model.predict(x[:2]).tolist()


async def test_list_status_and_health(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = iris_model
    async with serving(model_settings("iris", folder)) as (client, _):
        assert (await client.get("/v1/models")).json() == {"models": ["iris"]}
        assert (await client.get("/v1/models/iris")).json() == {"name": "iris", "ready": True}
        assert (await client.get("/")).json() == {"status": "alive"}
        missing = await client.get("/v1/models/wine")
        assert missing.status_code == 404
        assert "available models: iris" in missing.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        pytest.param(b"{not json", 400, "not valid JSON", id="malformed-json"),
        pytest.param(b"[1, 2]", 400, "JSON object", id="not-an-object"),
        pytest.param(b'{"rows": [[1,2,3,4]]}', 400, '"instances"', id="no-instances"),
        pytest.param(b'{"instances": []}', 400, "non-empty", id="empty"),
        pytest.param(b'{"instances": [[1,2],[1,2,3]]}', 400, "ragged", id="ragged"),
        pytest.param(b'{"instances": [["a","b","c","d"]]}', 400, "must be numbers", id="strings"),
        pytest.param(b'{"instances": [[1,2,3]]}', 400, "expects [-1, 4]", id="wrong-width"),
    ],
)
async def test_bad_requests_get_4xx_json_errors(
    iris_model, body: bytes, status: int, message: str
) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = iris_model
    async with serving(model_settings("iris", folder)) as (client, _):
        response = await client.post("/v1/models/iris:predict", content=body)
        assert response.status_code == status
        assert message in response.json()["error"]


async def test_unknown_model_and_route_are_404(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = iris_model
    async with serving(model_settings("iris", folder)) as (client, _):
        response = await client.post("/v1/models/wine:predict", json={"instances": [[1, 2, 3, 4]]})
        assert response.status_code == 404
        assert (await client.post("/v1/whatever", json={})).status_code == 404
        assert (await client.put("/v1/models/iris:predict", json={})).status_code == 405


async def test_explain_on_a_linear_model_says_how_to_get_one(iris_model) -> None:  # type: ignore[no-untyped-def]
    folder, _, _ = iris_model
    async with serving(model_settings("iris", folder)) as (client, _):
        response = await client.post("/v1/models/iris:explain", json={"instances": [[1, 2, 3, 4]]})
        assert response.status_code == 501
        assert "explainer component" in response.json()["error"]


async def test_explain_on_a_tree_model_equals_shap(tmp_path: Path) -> None:
    shap = pytest.importorskip("shap")
    from model_fixtures import train_xgboost

    model, x = train_xgboost(tmp_path)
    async with serving(model_settings("trees", tmp_path)) as (client, _):
        response = await client.post("/v1/models/trees:explain", json={"instances": x[:3].tolist()})
        assert response.status_code == 200
        answer = orjson.loads(response.content)
    expected = shap.TreeExplainer(model).shap_values(x[:3])
    np.testing.assert_allclose(
        np.asarray(answer["data"]["shap_values"]), np.asarray(expected), rtol=1e-5
    )
    assert answer["meta"]["name"] == "TreeShap"
