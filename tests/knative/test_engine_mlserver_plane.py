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
from plane_fixtures import LocalPlane, apply

from knserve.knative.supervisor.engine_env import build, built
from knserve.knative.supervisor.engines import MLSERVER, EngineImage

pytestmark = pytest.mark.slow

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


def mlserver_service(name: str, model_dir: Path) -> dict[str, Any]:
    """The Knative Service KServe makes of an mlflow InferenceService on kserve-mlserver: the
    runtime's container, its env unchanged (MLServer on 8080, gRPC on 9000, metrics on its
    default 8082: the plane maps them), and the env KServe's defaulting adds."""
    env = {
        "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_mlflow.MLflowRuntime",
        "MLSERVER_HTTP_PORT": "8080",
        "MLSERVER_GRPC_PORT": "9000",
        "MLSERVER_MODEL_NAME": name,
        "MLSERVER_MODEL_URI": str(model_dir),
    }
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "kserve-container",
                            "image": MLSERVER_IMAGE,
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                            # Knative's default TCP probe passes while the model still loads
                            "readinessProbe": {"httpGet": {"path": f"/v2/models/{name}/ready"}},
                        }
                    ]
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


def test_an_mlflow_model_answers_v2_through_mlserver(
    plane: LocalPlane, tmp_path: Path, wine_model: tuple[Path, dict]
) -> None:
    folder, expected = wine_model
    apply(plane, tmp_path, mlserver_service("wine", folder))
    started = time.monotonic()
    plane.wait_ready("services", "wine", timeout=300)
    print(f"mlserver revision ready in {time.monotonic() - started:.1f}s")
    answer = v2_infer(plane, "wine.default.localhost", "wine", expected["rows"])
    assert answer["model_name"] == "wine"
    assert [o["data"] for o in answer["outputs"]] == [expected["predictions"]]
