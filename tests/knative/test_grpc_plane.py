"""An InferenceService with `protocolVersion: grpc-v2` on a real local plane, called with Triton's
and KServe's gRPC clients through the gateway (h2c), from zero replicas too.

As on KServe, the runtime must list grpc-v2 among its protocolVersions: KServe's stock
kserve-sklearnserver does not, so the test applies a ServingRuntime that runs the same server
(KServe's container, unchanged) and says it speaks grpc-v2. The predictor declares no port: the
InferenceService's translation gives a grpc-v2 predictor KServe's `h2c` port 8081.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from plane_fixtures import LocalPlane, apply

pytest.importorskip("grpc")
pytestmark = pytest.mark.slow

DRIVER = Path(__file__).parents[1] / "support" / "grpc_client_driver.py"
PREDICTOR = "iris-grpc-predictor-00001"

SERVING_RUNTIME = {
    "apiVersion": "serving.kserve.io/v1alpha1",
    "kind": "ServingRuntime",
    "metadata": {"name": "sklearn-grpc", "namespace": "default"},
    "spec": {
        "supportedModelFormats": [{"name": "sklearn", "version": "1", "autoSelect": True}],
        "protocolVersions": ["v1", "v2", "grpc-v2"],
        "containers": [
            {
                "name": "kserve-container",
                "image": "kserve/sklearnserver:v0.21.0",
                "args": ["--model_name={{.Name}}", "--model_dir=/mnt/models", "--http_port=8080"],
            }
        ],
    },
}


def isvc(storage: Path) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris-grpc", "namespace": "default"},
        "spec": {
            "predictor": {
                "minReplicas": 0,  # KServe's default is 1
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "protocolVersion": "grpc-v2",
                    "storageUri": f"file://{storage}",
                },
            }
        },
    }


def drive(kind: str, plane: LocalPlane, authority: str, rows: np.ndarray) -> Any:
    address = f"127.0.0.1:{plane.port}"
    args = [sys.executable, str(DRIVER), kind, address, "iris-grpc", authority]
    done = subprocess.run(
        args, input=json.dumps(rows.tolist()), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:] + plane.log()[-3000:]
    return json.loads(done.stdout)


def test_grpc_clients_reach_a_grpc_v2_inferenceservice_through_the_gateway_from_zero(
    fast_plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    plane = fast_plane
    apply(plane, tmp_path, SERVING_RUNTIME, isvc(sklearn_iris_dir))
    ready = plane.wait_ready("inferenceservices", "iris-grpc", timeout=180)
    ksvc = plane.get("services", "iris-grpc-predictor")
    ports = ksvc["spec"]["template"]["spec"]["containers"][0]["ports"]
    assert ports == [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}]
    model = joblib.load(sklearn_iris_dir / "model.joblib")
    rows = np.asarray([[5.1, 3.5, 1.4, 0.2], [6.8, 2.8, 4.8, 1.4]], dtype=np.float32)
    expected = model.predict(rows).tolist()

    plane.wait_scaled_to_zero(PREDICTOR)
    # the first call finds no replica: the gateway holds it while the predictor starts
    triton = drive("triton", plane, "iris-grpc.default.localhost", rows)
    assert triton["model_ready"] and triton["outputs"] == {"output-0": expected}
    assert triton["errors"]["unknown_model"][0] == "StatusCode.NOT_FOUND"
    assert triton["errors"]["bad_width"][0] == "StatusCode.INVALID_ARGUMENT"
    # KServe's client, by the predictor's own host
    kserve = drive("kserve", plane, "iris-grpc-predictor.default.localhost", rows)
    assert kserve["outputs"] == {"output-0": expected}
    assert kserve["errors"]["bad_shape"][0] == "INVALID_ARGUMENT"
    assert ready["status"]["url"] == "http://iris-grpc.default.localhost"
    # each RPC is one request of the revision: Triton's 6 health/metadata calls and 3 infers,
    # KServe's 3 and 3
    assert plane.metrics()[PREDICTOR]["requests_total"] == 15
