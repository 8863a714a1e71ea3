"""KServe's documented custom model as an InferenceService on the local plane, both ways: the file
run by KServe's own server as the container's command, and the same file (with KServe's custom
transformer in front) hosted by knserve's runtime (`image: knserve/runtime`,
`args: [--kserve-model=FILE, …]`).

The first is KServe's YAML as documented (`--http_port=8080`, and KServe's server binds gRPC on
[::]:8081 whatever its arguments say): it needs the plane's port mapping (each replica's fixed
ports mapped to its own), and fails where that is missing. KServe's own server is not put in
front as a transformer too, reaching `{isvc}-predictor.{namespace}.localhost` through the gateway
(by `HTTP_PROXY`, which KServe 0.21's client honours; a client that does not is covered by the port
map shim's name resolution, tests/knative/test_port_map_shim_names.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import joblib
import pytest
import yaml
from plane_fixtures import LocalPlane, apply, is_ready

pytest.importorskip("kserve")
pytestmark = pytest.mark.slow

SDK = Path(__file__).resolve().parent.parent / "support" / "kserve_sdk"
HOST = "custom-model.default.localhost"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = ["setosa", "versicolor", "virginica"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.8, 2.8, 4.8, 1.4], [6.3, 3.3, 6.0, 2.5]]

# KServe's custom model YAML, in its documented form; on the plane a container runs its command
# (there are no images), so it names the Python that has kserve and the file.
KSERVE_SERVER_YAML = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: custom-model
spec:
  predictor:
    containers:
      - name: kserve-container
        image: kserve/custom-model:v1
        command: [python, custom_model.py]
        args: ["--model_name=custom-model", "--http_port=8080", "--model_dir=MODEL_DIR"]
        workingDir: SDK_DIR
"""

# KServe's custom transformer YAML in front of it, both run by KServe's own server.
KSERVE_SERVER_CHAIN_YAML = (
    KSERVE_SERVER_YAML
    + """
  transformer:
    containers:
      - name: kserve-container
        image: kserve/custom-transformer:v1
        command: [python, custom_transformer.py]
        args: ["--model_name=custom-model", "--http_port=8080", "--predictor_protocol=v2"]
        workingDir: SDK_DIR
"""
)

# The same files hosted by knserve's runtime, with KServe's custom transformer in front.
KNSERVE_HOSTED_YAML = """
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: custom-model
spec:
  predictor:
    containers:
      - name: kserve-container
        image: knserve/runtime
        args: ["--kserve-model=SDK_DIR/custom_model.py", "--model_name=custom-model",
               "--model_dir=MODEL_DIR"]
  transformer:
    containers:
      - name: kserve-container
        image: knserve/runtime
        args: ["--kserve-model=SDK_DIR/custom_transformer.py", "--predictor_protocol=v2"]
"""


def isvc_of(text: str, model_dir: Path) -> dict[str, Any]:
    text = text.replace("MODEL_DIR", str(model_dir)).replace("SDK_DIR", str(SDK))
    obj = yaml.safe_load(text)
    for component in obj["spec"].values():
        for container in component["containers"]:
            if container.get("command", [None])[0] == "python":
                container["command"][0] = sys.executable  # the `python` that has kserve
    return obj


def v2_rows() -> dict[str, Any]:
    data = [v for r in ROWS for v in r]
    return {"inputs": [{"name": "input-0", "shape": [3, 4], "datatype": "FP64", "data": data}]}


def test_kserves_custom_model_yaml_runs_kserves_own_server_on_the_plane(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    apply(plane, tmp_path, isvc_of(KSERVE_SERVER_YAML, sklearn_iris_dir))
    plane.wait_for("inferenceservices", "custom-model", is_ready, timeout=100)
    expected = joblib.load(sklearn_iris_dir / "model.joblib").predict(ROWS).tolist()
    v1 = plane.call(HOST, "/v1/models/custom-model:predict", "POST", json={"instances": ROWS})
    assert v1.status_code == 200, v1.text + plane.log()[-3000:]
    assert v1.json() == {"predictions": expected}
    v2 = plane.call(HOST, "/v2/models/custom-model/infer", "POST", json=v2_rows())
    assert v2.status_code == 200, v2.text + plane.log()[-3000:]
    assert v2.json()["outputs"][0]["data"] == expected


def test_kserves_custom_model_and_transformer_hosted_by_knserve_on_the_plane(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    apply(plane, tmp_path, isvc_of(KNSERVE_HOSTED_YAML, sklearn_iris_dir))
    ready = plane.wait_for("inferenceservices", "custom-model", is_ready, timeout=100)
    conditions = {c["type"]: c["status"] for c in ready["status"]["conditions"]}
    assert conditions["PredictorReady"] == conditions["TransformerReady"] == "True"
    expected = joblib.load(sklearn_iris_dir / "model.joblib").predict(ROWS).tolist()
    named = [dict(zip(FEATURES, r, strict=True)) for r in ROWS]
    # the transformer takes named features and answers species, asking the predictor (V2)
    v1 = plane.call(HOST, "/v1/models/custom-model:predict", "POST", json={"instances": named})
    assert v1.status_code == 200, v1.text + plane.log()[-3000:]
    assert v1.json() == {"predictions": [SPECIES[c] for c in expected]}
    v2 = plane.call(HOST, "/v2/models/custom-model/infer", "POST", json=v2_rows())
    assert v2.status_code == 200, v2.text + plane.log()[-3000:]
    assert v2.json()["outputs"][0]["data"] == expected


def test_kserves_custom_transformer_run_by_kserves_own_server_reaches_its_predictor(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    apply(plane, tmp_path, isvc_of(KSERVE_SERVER_CHAIN_YAML, sklearn_iris_dir))
    plane.wait_for("inferenceservices", "custom-model", is_ready, timeout=100)
    expected = joblib.load(sklearn_iris_dir / "model.joblib").predict(ROWS).tolist()
    named = [dict(zip(FEATURES, r, strict=True)) for r in ROWS]
    # KServe's client asks http://custom-model-predictor.default.localhost/v2/… (port 80)
    v1 = plane.call(HOST, "/v1/models/custom-model:predict", "POST", json={"instances": named})
    assert v1.status_code == 200, v1.text + plane.log()[-3000:]
    assert v1.json() == {"predictions": [SPECIES[c] for c in expected]}
