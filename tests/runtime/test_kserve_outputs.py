"""V2 answers of the tabular formats as KServe's servers give them: one output `output-0` with
the framework's answer (kserve/utils/utils.py get_predict_response), its datatype and shape from
the array, and an `id` echoed or made up; the framework's own outputs by name besides."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from model_fixtures import train_lightgbm, train_sklearn_iris
from runtime_fixtures import model_settings, serving


def tensor(x: np.ndarray) -> dict[str, object]:
    return {"name": "input-0", "shape": list(x.shape), "datatype": "FP64", "data": x.tolist()}


async def test_sklearn_predict_proba_env_makes_output_0_the_probabilities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # KServe's sklearnserver/model.py (SKLearnModel.predict) reads PREDICT_PROBA the same way
    monkeypatch.setenv("PREDICT_PROBA", "true")
    model, x = train_sklearn_iris(tmp_path)
    rows = x[::30]
    async with serving(model_settings("iris", tmp_path)) as (client, _):
        meta = (await client.get("/v2/models/iris")).json()
        assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
            ("output-0", "FP64", [-1, 3]),
            ("predict", "INT64", [-1]),
            ("predict_proba", "FP64", [-1, 3]),
        ]
        v1 = await client.post("/v1/models/iris:predict", json={"instances": rows.tolist()})
        np.testing.assert_allclose(v1.json()["predictions"], model.predict_proba(rows), rtol=1e-12)
        v2 = await client.post("/v2/models/iris/infer", json={"inputs": [tensor(rows)]})
        (out,) = v2.json()["outputs"]
        assert (out["name"], out["datatype"], out["shape"]) == ("output-0", "FP64", [len(rows), 3])
        np.testing.assert_allclose(
            np.reshape(out["data"], out["shape"]), model.predict_proba(rows), rtol=1e-12
        )


async def test_lightgbm_output_0_is_the_boosters_probabilities(tmp_path: Path) -> None:
    booster, x = train_lightgbm(tmp_path)
    rows = x[::40]
    async with serving(model_settings("lgb", tmp_path)) as (client, _):
        meta = (await client.get("/v2/models/lgb")).json()
        assert meta["outputs"][0] == {"name": "output-0", "datatype": "FP64", "shape": [-1, 3]}
        v2 = await client.post("/v2/models/lgb/infer", json={"inputs": [tensor(rows)]})
        (out,) = v2.json()["outputs"]
        assert (out["name"], out["datatype"], out["shape"]) == ("output-0", "FP64", [len(rows), 3])
        np.testing.assert_array_equal(np.reshape(out["data"], out["shape"]), booster.predict(rows))


@pytest.mark.parametrize("cache_entries", [0, 8], ids=["computed", "cached"])
async def test_the_response_id_is_echoed_or_made_up(tmp_path: Path, cache_entries: int) -> None:
    train_sklearn_iris(tmp_path)
    body = {"inputs": [tensor(np.ones((1, 4)))]}
    async with serving(model_settings("iris", tmp_path, cache_entries=cache_entries)) as (
        client,
        _,
    ):
        ids = []
        for _ in range(2):
            answer = (await client.post("/v2/models/iris/infer", json=body)).json()
            ids.append(str(uuid.UUID(answer["id"])))  # a uuid, as KServe's servers make one
        assert ids[0] != ids[1]
        echoed = await client.post("/v2/models/iris/infer", json={**body, "id": "r-1"})
        assert echoed.json()["id"] == "r-1"
