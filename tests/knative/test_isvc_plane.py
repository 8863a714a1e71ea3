"""InferenceServices on the local plane, end to end: KServe's iris example, canary, promote, roll back."""

from __future__ import annotations

import concurrent.futures
import shutil
from pathlib import Path
from typing import Any

import pytest
from plane_fixtures import LocalPlane, apply

pytestmark = pytest.mark.slow

HOST = "sklearn-iris.default.localhost"
SETOSA = [6.8, 2.8, 4.8, 1.4]


def iris_isvc(storage: Path, **predictor: Any) -> dict[str, Any]:
    """KServe's sklearn iris example, with a local storageUri."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "sklearn-iris", "namespace": "default"},
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{storage}"},
                **predictor,
            }
        },
    }


def predict(plane: LocalPlane, host: str = HOST) -> None:
    response = plane.call(
        host, "/v1/models/sklearn-iris:predict", "POST", json={"instances": [SETOSA]}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": [1]}


def served(plane: LocalPlane, revisions: list[str], count: int, host: str = HOST) -> dict[str, int]:
    """How many of `count` predictions to `host` each revision served (the gateway's counters)."""
    before = plane.metrics()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: predict(plane, host), range(count)))
    after = plane.metrics()
    counts = {
        r: int(
            after.get(r, {}).get("requests_total", 0) - before.get(r, {}).get("requests_total", 0)
        )
        for r in revisions
    }
    return {r: n for r, n in counts.items() if n}


def ready_at(plane: LocalPlane, generation: int | None = None) -> dict[str, Any]:
    def done(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        if generation is not None and status.get("observedGeneration") != generation:
            return False
        return any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", [])
        )

    return plane.wait_for("inferenceservices", "sklearn-iris", done, timeout=120)


def test_kserves_iris_example_canary_promote_and_roll_back(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    v1 = tmp_path / "v1"
    shutil.copytree(sklearn_iris_dir, v1)
    apply(plane, tmp_path, iris_isvc(v1))
    isvc = ready_at(plane)
    assert isvc["status"]["url"] == f"http://{HOST}"

    v1_answer = plane.call(
        HOST, "/v1/models/sklearn-iris:predict", "POST", json={"instances": [SETOSA]}
    )
    assert v1_answer.status_code == 200, v1_answer.text
    assert v1_answer.json() == {"predictions": [1]}
    v2_answer = plane.call(
        HOST,
        "/v2/models/sklearn-iris/infer",
        "POST",
        json={"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": SETOSA}]},
    )
    assert v2_answer.status_code == 200, v2_answer.text
    assert v2_answer.json()["outputs"][0]["data"] == [1]

    # a canary at 10 %: a new storageUri, a new revision, tagged latest; the old one tagged prev
    v2 = tmp_path / "v2"
    shutil.copytree(sklearn_iris_dir, v2)
    apply(plane, tmp_path, iris_isvc(v2, canaryTrafficPercent=10))
    isvc = ready_at(plane, generation=2)
    traffic = {t.get("tag"): t for t in isvc["status"]["components"]["predictor"]["traffic"]}
    assert traffic["latest"]["percent"] == 10
    assert traffic["prev"]["percent"] == 90
    latest, prev = traffic["latest"]["revisionName"], traffic["prev"]["revisionName"]
    assert latest != prev

    counts = served(plane, [latest, prev], 1000)
    assert 50 <= counts[latest] <= 150, counts
    assert counts[latest] + counts[prev] == 1000

    for tag, revision in (("latest", latest), ("prev", prev)):
        tagged = served(plane, [latest, prev], 1, f"{tag}-sklearn-iris-predictor.default.localhost")
        assert tagged == {revision: 1}

    # promote: without canaryTrafficPercent the latest revision takes everything
    apply(plane, tmp_path, iris_isvc(v2))
    isvc = ready_at(plane, generation=3)
    promoted = isvc["status"]["components"]["predictor"]["traffic"]
    assert [(t["revisionName"], t["percent"]) for t in promoted if t["percent"]] == [(latest, 100)]

    # roll back: canaryTrafficPercent 0 on a new spec sends everything to the last rolled-out one
    v3 = tmp_path / "v3"
    shutil.copytree(sklearn_iris_dir, v3)
    apply(plane, tmp_path, iris_isvc(v3, canaryTrafficPercent=0))
    isvc = ready_at(plane, generation=4)
    rolled_back = isvc["status"]["components"]["predictor"]["traffic"]
    assert [(t["revisionName"], t["percent"]) for t in rolled_back if t["percent"]] == [
        (latest, 100)
    ]
    assert served(plane, [latest, prev], 20) == {latest: 20}


def constant_model(folder: Path, answer: int) -> Path:
    """A scikit-learn model that answers `answer` to everything: a second version that can be
    told apart from the iris one by its predictions."""
    import joblib
    from model_fixtures import iris
    from sklearn.dummy import DummyClassifier

    x, y = iris()
    folder.mkdir(parents=True)
    joblib.dump(
        DummyClassifier(strategy="constant", constant=answer).fit(x, y), folder / "model.joblib"
    )
    return folder


def answers(plane: LocalPlane, count: int) -> set[int]:
    """The predictions `count` requests for SETOSA get from the InferenceService's own host."""
    got = set()
    for _ in range(count):
        response = plane.call(
            HOST, "/v1/models/sklearn-iris:predict", "POST", json={"instances": [SETOSA]}
        )
        assert response.status_code == 200, response.text
        got.update(response.json()["predictions"])
    return got


def test_canary_zero_after_a_promote_rolls_back_to_the_previous_model_scaled_up_from_zero(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    v1 = tmp_path / "v1"
    shutil.copytree(sklearn_iris_dir, v1)
    apply(plane, tmp_path, iris_isvc(v1))
    status = ready_at(plane)["status"]
    first = status["components"]["predictor"]["latestReadyRevision"]
    assert answers(plane, 5) == {1}
    # KServe's cluster-local address, which the gateway answers as a cluster's mesh would
    local = "sklearn-iris.default.svc.cluster.local"
    assert status["address"]["url"] == f"http://{local}"
    predict(plane, local)

    # the new version rolled out at once (no canary): a promote, v1 keeps no traffic
    v2 = constant_model(tmp_path / "v2", 2)
    apply(plane, tmp_path, iris_isvc(v2))
    predictor = ready_at(plane, generation=2)["status"]["components"]["predictor"]
    second = predictor["latestReadyRevision"]
    assert (predictor["latestRolledoutRevision"], predictor["previousRolledoutRevision"]) == (
        second,
        first,
    )
    assert answers(plane, 5) == {2}
    plane.wait_for("revisions", first, lambda r: r.get("status", {}).get("actualReplicas") == 0)

    # canaryTrafficPercent 0: everything goes back to v1, which scales up from zero again
    apply(plane, tmp_path, iris_isvc(v2, canaryTrafficPercent=0))

    def rolled_back(obj: dict[str, Any]) -> bool:
        traffic = (
            (obj.get("status") or {}).get("components", {}).get("predictor", {}).get("traffic", [])
        )
        return [(t["revisionName"], t["percent"]) for t in traffic if t["percent"]] == [
            (first, 100)
        ]

    isvc = plane.wait_for("inferenceservices", "sklearn-iris", rolled_back, timeout=120)
    assert isvc["status"]["components"]["predictor"]["latestRolledoutRevision"] == first
    assert answers(plane, 20) == {1}


def test_a_model_file_that_cannot_be_loaded_shows_its_reason_in_isvc_describe(
    plane: LocalPlane, tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.joblib").write_bytes(b"this is not a pickle")
    apply(plane, tmp_path, iris_isvc(corrupt))

    def failed(obj: dict[str, Any]) -> bool:
        model = (obj.get("status") or {}).get("modelStatus") or {}
        return (model.get("states") or {}).get("targetModelState") == "FailedToLoad"

    isvc = plane.wait_for("inferenceservices", "sklearn-iris", failed, timeout=120)
    failure = isvc["status"]["modelStatus"]["lastFailureInfo"]
    assert failure["reason"] == "ModelLoadFailed"
    assert failure["exitCode"] == 1
    assert isvc["status"]["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    described = plane.knserve("isvc", "describe", "sklearn-iris")
    assert described.returncode == 0, described.stderr
    model = described.stdout.split("Model:\n", 1)[1]
    assert "FailedToLoad" in model and "ModelLoadFailed, exit code 1" in model
    why = (
        f"model sklearn-iris failed to load: cannot load scikit-learn model {corrupt}/model.joblib"
    )
    assert why in model, described.stdout
