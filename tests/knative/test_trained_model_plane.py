"""TrainedModels on a real plane: ten sklearn models in one multi-model InferenceService, each
answering with its own model through the gateway, surviving scale to zero and back; a bad
storageUri failing alone with its reason; KServe's capacity rule; delete unloads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from net_fixtures import eventually
from plane_fixtures import LocalPlane, apply

pytestmark = pytest.mark.slow

HOST = "mms.default.localhost"
SETOSA = [5.1, 3.5, 1.4, 0.2]  # class 0 of iris: model m{i} answers 10 * i
COUNT = 10


def train_offset_iris(folder: Path, offset: int) -> None:
    """LogisticRegression on iris with its classes renumbered from `offset`."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y + offset), folder / "model.joblib")


def mms_isvc() -> dict[str, Any]:
    """A multi-model InferenceService: a runtime and no storageUri, scaling to zero."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "mms", "namespace": "default"},
        "spec": {"predictor": {"minReplicas": 0, "model": {"modelFormat": {"name": "sklearn"}}}},
    }


def trained_model(name: str, uri: str, memory: str = "100Mi") -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "TrainedModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "inferenceService": "mms",
            "model": {"storageUri": uri, "framework": "sklearn", "memory": memory},
        },
    }


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), {}
    )


def predict(plane: LocalPlane, name: str) -> Any:
    response = plane.call(HOST, f"/v1/models/{name}:predict", "POST", json={"instances": [SETOSA]})
    assert response.status_code == 200, (name, response.text)
    return response.json()["predictions"]


def every_model_answers_its_own(plane: LocalPlane) -> None:
    for i in range(COUNT):
        assert predict(plane, f"m{i}") == [10 * i]


def test_ten_trained_models_in_one_server_through_scale_to_zero(
    fast_plane: LocalPlane, tmp_path: Path
) -> None:
    plane = fast_plane
    for i in range(COUNT):
        train_offset_iris(tmp_path / f"m{i}", 10 * i)
    apply(plane, tmp_path, mms_isvc())
    plane.wait_ready("inferenceservices", "mms", timeout=120)
    models = [trained_model(f"m{i}", f"file://{tmp_path / f'm{i}'}") for i in range(COUNT)]
    bad = trained_model("bad", f"file://{tmp_path / 'no-such-model'}")
    # 10 x 100Mi fit KServe's default 2Gi limit; 1.5Gi more does not
    big = trained_model("big", f"file://{tmp_path / 'm0'}", memory="1.5Gi")
    apply(plane, tmp_path, *models, bad, big)
    for i in range(COUNT):
        tm = plane.wait_ready("trainedmodels", f"m{i}", timeout=60)
        assert tm["status"]["url"] == f"http://{HOST}/v1/models/m{i}:predict"
        assert {c["type"] for c in tm["status"]["conditions"]} == {
            "FrameworkSupported",
            "InferenceServiceReady",
            "IsMMSPredictor",
            "MemoryResourceAvailable",
            "Ready",
        }
    every_model_answers_its_own(plane)  # wakes the server if it went to zero meanwhile
    v2 = plane.call(
        HOST,
        "/v2/models/m7/infer",
        "POST",
        json={"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": SETOSA}]},
    )
    assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == [70]

    # the bad storageUri fails alone, with the server's reason
    failed = plane.wait_for(
        "trainedmodels", "bad", lambda o: condition(o, "Ready").get("reason") == "ModelLoadFailed"
    )
    assert "no-such-model" in condition(failed, "Ready")["message"]
    assert condition(failed, "MemoryResourceAvailable")["status"] == "True"
    # the capacity rule: not Ready with KServe's reason, and never loaded
    over = plane.wait_for(
        "trainedmodels",
        "big",
        lambda o: condition(o, "Ready").get("reason") == "MemoryResourceNotAvailable",
    )
    assert "2Gi" in condition(over, "MemoryResourceAvailable")["message"]
    assert "serving.kserve.io/trainedmodel-allocated" not in over["metadata"]["labels"]
    assert (
        plane.call(HOST, "/v1/models/big:predict", "POST", json={"instances": [SETOSA]}).status_code
        == 404
    )

    # idle: the server scales to zero; a request wakes a new replica that holds all ten
    revision = "mms-predictor-00001"
    eventually(
        lambda: plane.metrics().get(revision, {}).get("actual_pods") == 0,
        60,
        "the multi-model server never scaled to zero",
    )
    every_model_answers_its_own(plane)

    # deleting a TrainedModel unloads it from the running server; the others stay
    listed = plane.knserve("tm", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(rows) == {*(f"m{i}" for i in range(COUNT)), "bad", "big"}
    assert "ModelLoadFailed" in rows["bad"] and f"http://{HOST}/v1/models/m3:predict" in rows["m3"]
    described = plane.knserve("tm", "describe", "big")
    assert "MemoryResourceNotAvailable" in described.stdout, described.stdout
    deleted = plane.knserve("tm", "delete", "m3")
    assert "TrainedModel 'm3' successfully deleted" in deleted.stdout, deleted.stderr
    eventually(
        lambda: (
            plane.call(
                HOST, "/v1/models/m3:predict", "POST", json={"instances": [SETOSA]}
            ).status_code
            == 404
        ),
        30,
        "m3 was still served after its TrainedModel was deleted",
    )
    assert predict(plane, "m4") == [40]
