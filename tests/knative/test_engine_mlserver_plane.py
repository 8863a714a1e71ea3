"""MLServer, KServe's V2 runtime, as a revision process on a real plane: an MLflow model saved by
`mlflow.sklearn.save_model` answers through the kserve-mlserver runtime's container.

The engine's environment is built in the test setup (once per machine: later runs find it in
the engines cache, ~/.cache/knserve/engines), and the model is saved with that environment's
own python, so mlflow stays out of the test's environment."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from net_fixtures import eventually
from plane_fixtures import LocalPlane, apply

from knserve.knative.supervisor.engine_env import build, built
from knserve.knative.supervisor.engines import MLSERVER, EngineImage

# The suite's 120 s limit is for the test itself: on a fresh machine the module fixture first builds
# MLServer's environment (~110 s here), which BUILD_TIMEOUT bounds on its own.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120, func_only=True)]

MLSERVER_IMAGE = "docker.io/seldonio/mlserver:1.7.1"  # KServe 0.21's kserve-mlserver image
BUILD_TIMEOUT = 1500.0

SAVE_MODEL = """
import json, sys
import mlflow.sklearn
from mlflow.models import infer_signature
from sklearn.datasets import load_wine
from sklearn.linear_model import LogisticRegression

X, y = load_wine(return_X_y=True)
model = LogisticRegression(max_iter=5000).fit(X, y)
rows = X[::25]
mlflow.sklearn.save_model(model, sys.argv[1], signature=infer_signature(X, model.predict(X)))
json.dump({"rows": rows.tolist(), "predictions": model.predict(rows).tolist()}, sys.stdout)
"""


@pytest.fixture(scope="module")
def mlserver_env() -> Path:
    """MLServer 1.7.1's environment, built now unless a previous run on this machine built it."""
    image = EngineImage(MLSERVER, "1.7.1")
    started = time.monotonic()
    cached = built(image) is not None
    root = asyncio.run(asyncio.wait_for(build(image, print), BUILD_TIMEOUT))
    print(
        f"mlserver environment {'reused' if cached else 'built'} in {time.monotonic() - started:.0f}s"
    )
    return root


@pytest.fixture(scope="module")
def wine_model(mlserver_env: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An MLflow model directory (MLmodel, pyfunc) and the model's own predictions for some rows."""
    folder = tmp_path_factory.mktemp("mlflow") / "wine"
    saved = subprocess.run(
        [str(mlserver_env / "bin" / "python"), "-c", SAVE_MODEL, str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert saved.returncode == 0, saved.stderr
    assert (folder / "MLmodel").is_file()
    return folder, json.loads(saved.stdout)


def mlflow_isvc(name: str, model_dir: Path) -> dict[str, Any]:
    """KServe's documented InferenceService for an MLflow model (V2 protocol, as its example
    names it): modelFormat mlflow selects kserve-mlserver."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "mlflow"},
                    "protocolVersion": "v2",
                    "storageUri": f"file://{model_dir}",
                }
            }
        },
    }


def v2_infer(plane: LocalPlane, host: str, name: str, rows: list[list[float]]) -> dict[str, Any]:
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [len(rows), len(rows[0])],
                "datatype": "FP64",
                "data": [v for row in rows for v in row],
            }
        ]
    }
    response = plane.call(host, f"/v2/models/{name}/infer", "POST", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_mlflow_model_answers_v2_through_kserve_mlserver(
    plane: LocalPlane, tmp_path: Path, wine_model: tuple[Path, dict]
) -> None:
    folder, expected = wine_model
    apply(plane, tmp_path, mlflow_isvc("wine", folder))
    started = time.monotonic()
    isvc = plane.wait_ready("inferenceservices", "wine", timeout=300)
    host = isvc["status"]["url"].removeprefix("http://")
    # kserve-mlserver has no readiness probe: Knative's TCP probe passes while MLServer still
    # loads the model, so a client asks the model's readiness, as on a cluster
    eventually(
        lambda: plane.call(host, "/v2/models/wine/ready").status_code == 200,
        120,
        lambda: f"the model never became ready:\n{plane.log()}",
    )
    print(f"mlserver predictor ready in {time.monotonic() - started:.1f}s")
    revision = plane.get("services", "wine-predictor")["status"]["latestReadyRevisionName"]
    container = plane.get("revisions", revision)["spec"]["containers"][0]
    assert container["image"] == MLSERVER_IMAGE  # the runtime's container, env unchanged
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLSERVER_HTTP_PORT"] == "8080"
    assert env["MLSERVER_MODEL_URI"] == "/mnt/models"
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "mlserver_mlflow.MLflowRuntime"
    answer = v2_infer(plane, host, "wine", expected["rows"])
    assert answer["model_name"] == "wine"
    assert [o["data"] for o in answer["outputs"]] == [expected["predictions"]]
