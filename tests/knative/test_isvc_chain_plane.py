"""An InferenceService with a transformer and an explainer, reached through its own host."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
from plane_fixtures import LocalPlane, apply, built_function, is_ready

pytestmark = pytest.mark.slow

HOST = "iris.default.localhost"


def test_transformer_predictor_and_explainer_behind_the_inferenceservice_host(
    functions_home: Path, plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    transformer = built_function(plane, "transformer", tmp_path / "iris-transformer")
    explainer = built_function(plane, "explainer", tmp_path / "iris-explainer")
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "default"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": f"file://{sklearn_iris_dir}",
                }
            },
            "transformer": {"containers": [{"name": "kserve-container", "image": transformer}]},
            "explainer": {"containers": [{"name": "kserve-container", "image": explainer}]},
        },
    }
    apply(plane, tmp_path, isvc)
    ready = plane.wait_for("inferenceservices", "iris", is_ready, timeout=180)
    conditions = {c["type"]: c["status"] for c in ready["status"]["conditions"]}
    assert conditions["TransformerReady"] == conditions["ExplainerReady"] == "True"

    # the transformer takes millimetres and answers species names, asking the predictor between
    predicted = plane.call(
        HOST, "/v1/models/iris:predict", "POST", json={"instances": [[68, 28, 48, 14]]}
    )
    assert predicted.status_code == 200, predicted.text + plane.log()[-3000:]
    assert predicted.json() == {"predictions": ["versicolor"]}

    # :explain goes to the explainer, which asks the predictor over HTTP (KernelSHAP)
    explained = plane.call(
        HOST, "/v1/models/iris:explain", "POST", json={"instances": [[6.8, 2.8, 4.8, 1.4]]}
    )
    assert explained.status_code == 200, explained.text + plane.log()[-3000:]
    data = explained.json()["data"]
    shap_values = np.asarray(data["shap_values"][0])  # features x classes
    assert shap_values.shape == (4, 3)
    # SHAP's additivity: the base value plus the attributions is the model's probability
    model = joblib.load(sklearn_iris_dir / "model.joblib")
    proba = model.predict_proba(np.asarray([[6.8, 2.8, 4.8, 1.4]]))[0]
    np.testing.assert_allclose(
        np.asarray(data["expected_value"]) + shap_values.sum(axis=0), proba, atol=1e-6
    )
