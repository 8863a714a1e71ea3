"""KServe's stock runtime YAMLs applied unchanged on a real local plane, serving InferenceServices.

The runtimes' containers are KServe's own: `--model_dir=/mnt/models` (the storage initializer maps
it to the fetched model) and `--http_port=8080` (the plane maps the declared port to the
replica's). Nothing of the YAML is edited, and the answers equal the model's own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
import yaml
from model_fixtures import iris
from plane_fixtures import LocalPlane, is_ready

from knserve.knative.kserve.inferenceservice import knative_services
from knserve.knative.kserve.runtimes import STOCK_DIR, builtin_runtimes
from knserve.knative.supervisor.images import resolve

pytestmark = pytest.mark.slow


def isvc(name: str, storage: Path, **model: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": f"file://{storage}",
                    **model,
                }
            }
        },
    }


def predictions(plane: LocalPlane, name: str, rows: np.ndarray) -> list[Any]:
    response = plane.call(
        f"{name}.default.localhost",
        f"/v1/models/{name}:predict",
        "POST",
        json={"instances": rows.tolist()},
    )
    assert response.status_code == 200, response.text
    found: list[Any] = response.json()["predictions"]
    return found


@pytest.mark.parametrize("runtime", ["kserve-sklearnserver", "kserve-predictiveserver"])
def test_a_stock_runtime_s_rendered_container_runs_as_the_supervisor_resolves_it(
    runtime: str, sklearn_iris_dir: Path, spawn: Any, port: int
) -> None:
    """The container KServe's YAML renders, run as the supervisor runs it, with what the storage
    initializer and the port mapping do on the plane done by hand: /mnt/models → the model's
    folder, the declared 8080 → a free port."""
    (ksvc,) = knative_services(
        isvc("flowers", sklearn_iris_dir, runtime=runtime), builtin_runtimes()
    )
    container = ksvc["spec"]["template"]["spec"]["containers"][0]
    mapped = {
        **container,
        "args": [
            a.replace("/mnt/models", str(sklearn_iris_dir)).replace("=8080", f"={port}")
            for a in container["args"]
        ],
    }
    argv, _ = resolve(mapped, {})
    proc = spawn(argv)
    proc.wait_http(f"http://127.0.0.1:{port}/v1/models/flowers")
    x, _ = iris()
    rows = x[::15]
    answer = httpx.post(
        f"http://127.0.0.1:{port}/v1/models/flowers:predict", json={"instances": rows.tolist()}
    )
    model = joblib.load(sklearn_iris_dir / "model.joblib")
    assert answer.json() == {"predictions": model.predict(rows).tolist()}


@pytest.mark.timeout(300)
def test_stock_runtimes_applied_unchanged_serve_on_the_plane(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    documents = [
        (STOCK_DIR / "kserve-sklearnserver.yaml").read_text(),
        (STOCK_DIR / "kserve-predictiveserver.yaml").read_text(),
        yaml.safe_dump(isvc("auto-iris", sklearn_iris_dir)),
        yaml.safe_dump(isvc("combined-iris", sklearn_iris_dir, runtime="kserve-predictiveserver")),
    ]
    path = tmp_path / "objects.yaml"
    path.write_text("\n---\n".join(documents))
    result = plane.knserve("apply", "-f", str(path))
    assert result.returncode == 0, result.stderr
    assert "clusterservingruntimes.serving.kserve.io/kserve-sklearnserver" in result.stdout

    model = joblib.load(sklearn_iris_dir / "model.joblib")
    x, _ = iris()
    rows = x[::15]
    for name in ("auto-iris", "combined-iris"):
        found = plane.wait_for("inferenceservices", name, is_ready, timeout=120)
        assert found["status"]["url"] == f"http://{name}.default.localhost"
        assert predictions(plane, name, rows) == model.predict(rows).tolist()
    ksvc = plane.get("services", "combined-iris-predictor")
    args = ksvc["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--framework=sklearn" in args and "--model_dir=/mnt/models" in args
