"""Every model format through the server (V1 and V2) answers what the framework itself predicts."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from model_fixtures import (
    train_lightgbm,
    train_onnx,
    train_sklearn_iris,
    train_torch_mlp,
    train_xgboost,
)
from runtime_fixtures import model_settings, serving

TRAINERS = {
    "sklearn": train_sklearn_iris,
    "xgboost": train_xgboost,
    "lightgbm": train_lightgbm,
    "onnx": train_onnx,
    "pytorch": train_torch_mlp,
}


def framework_predict(fmt: str, model, rows: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    if fmt == "pytorch":
        import torch

        with torch.inference_mode():
            return model(torch.from_numpy(rows.astype(np.float32))).numpy()
    if fmt == "onnx":
        return model.predict(rows)  # the sklearn model skl2onnx converted
    if fmt == "xgboost":  # KServe's xgbserver answers the Booster's prediction (probabilities)
        import xgboost as xgb

        return model.get_booster().predict(xgb.DMatrix(rows))
    return model.predict(rows)


@pytest.mark.parametrize("fmt", list(TRAINERS))
async def test_v1_and_v2_equal_the_frameworks_predict(tmp_path: Path, fmt: str) -> None:
    model, x = TRAINERS[fmt](tmp_path)
    rows = x[::25].astype(np.float32)
    expected = framework_predict(fmt, model, rows)
    async with serving(model_settings("m", tmp_path)) as (client, _):
        v1 = await client.post("/v1/models/m:predict", json={"instances": rows.tolist()})
        assert v1.status_code == 200, v1.text
        np.testing.assert_allclose(np.asarray(v1.json()["predictions"]), expected, rtol=1e-6)
        body = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": "FP32",
                    "data": rows.ravel().tolist(),
                }
            ]
        }
        v2 = await client.post("/v2/models/m/infer", json=body)
        assert v2.status_code == 200, v2.text
        out = v2.json()["outputs"][0]
        np.testing.assert_allclose(np.reshape(out["data"], out["shape"]), expected, rtol=1e-6)


SERVE_SCRIPT = """
import sys
from knserve.runtime import Model, serve

class Doubler(Model):
    async def predict(self, payload, headers=None):
        return [2 * x for x in payload["instances"]]

serve([Doubler("doubler")], port=int(sys.argv[1]))
"""


@pytest.mark.slow
def test_the_python_api_serves_a_model_object(tmp_path: Path, spawn, port: int) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "app.py"
    script.write_text(SERVE_SCRIPT)
    proc = spawn([sys.executable, str(script), str(port)])
    proc.wait_http(f"http://127.0.0.1:{port}/v2/health/ready")
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/models/doubler:predict", json={"instances": [1, 2.5]}
    )
    assert answer.json() == {"predictions": [2, 5.0]}
