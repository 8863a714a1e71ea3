"""KServe's webhook rules at apply time: a refused InferenceService is a 422 Invalid Status that
names the field in KServe's words, and nothing is stored."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store

ISVCS = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"
IRIS: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "sklearn-iris", "namespace": "default"},
    "spec": {
        "predictor": {
            "model": {
                "modelFormat": {"name": "sklearn"},
                "storageUri": "gs://kfserving-examples/models/sklearn/1.0/model",
            }
        }
    },
}
MODEL = IRIS["spec"]["predictor"]["model"]
SERVER = {"name": "kserve-container", "image": "me/server:1"}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = Store(tmp_path / "state.db")
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client
    store.close()


def isvc(
    name: str = "sklearn-iris", annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    obj = copy.deepcopy(IRIS)
    obj["metadata"]["name"] = name
    if annotations:
        obj["metadata"]["annotations"] = annotations
    obj["spec"].update(copy.deepcopy(spec))
    return obj


def predictor(**fields: Any) -> dict[str, Any]:
    return {"model": copy.deepcopy(MODEL), **fields}


HPA = {"autoscaling.knative.dev/class": "hpa.autoscaling.knative.dev"}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        pytest.param(
            isvc("1-sklearn-iris"),
            "metadata.name: a InferenceService name must consist "
            "of lower case alphanumeric characters or '-', and must start with alphabetical "
            'character. (e.g. "my-name" or "abc-123", regex used for validation is '
            "'[a-z]([-a-z0-9]*[a-z0-9])?')",
            id="name-starts-with-a-digit",
        ),
        pytest.param(
            isvc(predictor={"minReplicas": 1}),
            "spec.predictor: exactly one of [SKLearn, "
            "XGBoost, Tensorflow, PyTorch, Triton, ONNX, HuggingFace, PMML, LightGBM, Paddle, "
            "Model, StorageUris, WorkerSpec, PodSpec] must be specified in PredictorSpec; "
            "found: none",
            id="no-implementation",
        ),
        pytest.param(
            isvc(predictor=predictor(sklearn={"storageUri": "gs://b/m"})),
            "must be specified in PredictorSpec; found: sklearn and model",
            id="model-and-sklearn",
        ),
        pytest.param(
            isvc(predictor=predictor(containers=[SERVER])),
            "must be specified in PredictorSpec; found: model and containers",
            id="model-and-server",
        ),
        pytest.param(
            isvc(predictor={"sklearn": {}, "xgboost": {}}),
            "found: sklearn and xgboost",
            id="two-empty-frameworks",
        ),
        pytest.param(
            isvc(transformer={"minReplicas": 0}),
            "spec.transformer: exactly one of "
            "[PodSpec, ComponentExtensionSpec] must be specified in TransformerSpec",
            id="transformer-without-containers",
        ),
        pytest.param(
            isvc(predictor=predictor(minReplicas=3, maxReplicas=2)),
            "spec.predictor.minReplicas: 'MinReplicas' cannot be greater than MaxReplicas",
            id="min-above-max",
        ),
        pytest.param(
            isvc(predictor=predictor(maxReplicas=-1)),
            "spec.predictor.maxReplicas: 'MaxReplicas' cannot be less than 0",
            id="negative-max",
        ),
        pytest.param(
            isvc(predictor=predictor(minReplicas=-1)),
            "spec.predictor.minReplicas: 'MinReplicas' cannot be less than 0",
            id="negative-min",
        ),
        pytest.param(
            isvc(predictor=predictor(containerConcurrency=-1)),
            "spec.predictor.containerConcurrency: parallelism cannot be less than 0",
            id="negative-concurrency",
        ),
        pytest.param(
            isvc(predictor=predictor(canaryTrafficPercent=120)),
            "spec.predictor.canaryTrafficPercent: expected 0 <= 120 <= 100",
            id="canary-over-100",
        ),
        pytest.param(
            isvc(predictor=predictor(canaryTrafficPercent=-5)),
            "spec.predictor.canaryTrafficPercent: expected 0 <= -5 <= 100",
            id="canary-negative",
        ),
        pytest.param(
            isvc(predictor=predictor(scaleMetric="cpu")),
            "spec.predictor.scaleMetric: [cpu] is not a supported metric",
            id="kpa-cpu",
        ),
        pytest.param(
            isvc(predictor=predictor(scaleMetric="rps", scaleTarget=0)),
            "spec.predictor.scaleTarget: the target for rps should be greater than 1",
            id="rps-target-0",
        ),
        pytest.param(
            isvc(annotations=HPA, predictor=predictor(scaleMetric="concurrency")),
            "spec.predictor.scaleMetric: [concurrency] is not a supported metric",
            id="hpa-concurrency",
        ),
        pytest.param(
            isvc(annotations=HPA, predictor=predictor(scaleMetric="cpu", scaleTarget=150)),
            "the target utilization percentage should be a [1-100] integer",
            id="hpa-cpu-150",
        ),
        pytest.param(
            isvc(predictor=predictor(deploymentStrategy={"type": "Recreate"})),
            "customizing deploymentStrategy is only supported for raw deployment mode",
            id="deployment-strategy",
        ),
        pytest.param(
            isvc(predictor={"model": {**MODEL, "name": "m"}}),
            "spec.predictor.model.name: the 'name' field is not allowed in standard predictor",
            id="named-model",
        ),
        pytest.param(
            isvc(annotations={"serving.kserve.io/autoscalerClass": "kpa"}),
            "[kpa] is not a supported autoscaler class type",
            id="autoscaler-class",
        ),
        pytest.param(
            isvc(predictor=predictor(storageUris=[{"uri": "gs://b/m", "mountPath": "/mnt/m"}])),
            "spec.predictor.storageUris: Setting both StorageURI and StorageURIs is not supported.",
            id="storage-uri-and-uris",
        ),
    ],
)
async def test_kserves_webhook_rules_refuse_at_apply_time_naming_the_field(
    api: httpx.AsyncClient, obj: dict[str, Any], message: str
) -> None:
    response = await api.post(ISVCS, json=obj)
    assert response.status_code == 422, response.text
    body = response.json()
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Invalid", 422)
    assert body["message"].startswith(f'InferenceService "{obj["metadata"]["name"]}" is invalid: ')
    assert message in body["message"]
    assert (await api.get(f"{ISVCS}/{obj['metadata']['name']}")).status_code == 404


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(isvc(), id="kserve-iris"),
        pytest.param(isvc(predictor={"sklearn": {"storageUri": "gs://b/m"}}), id="framework-key"),
        pytest.param(
            isvc(predictor={"containers": [{"name": "main", "image": "me/server:1"}]}),
            id="one-container",
        ),
        pytest.param(
            isvc(predictor=predictor(minReplicas=3, maxReplicas=0)), id="max-0-is-no-limit"
        ),
        pytest.param(
            isvc(
                predictor=predictor(
                    minReplicas=0,
                    canaryTrafficPercent=0,
                    scaleMetric="rps",
                    scaleTarget=1,
                    containerConcurrency=0,
                )
            ),
            id="bounds",
        ),
        pytest.param(
            isvc(annotations=HPA, predictor=predictor(scaleMetric="memory", scaleTarget=80)),
            id="hpa-memory",
        ),
        pytest.param(
            isvc(transformer={"containers": [{"name": "t", "image": "t"}]}), id="transformer"
        ),
    ],
)
async def test_what_kserves_webhook_accepts_is_stored(
    api: httpx.AsyncClient, obj: dict[str, Any]
) -> None:
    response = await api.post(ISVCS, json=obj)
    assert response.status_code == 201, response.text


async def test_an_update_that_breaks_a_rule_is_refused_and_the_object_is_unchanged(
    api: httpx.AsyncClient,
) -> None:
    created = (await api.post(ISVCS, json=isvc())).json()
    broken = copy.deepcopy(created)
    broken["spec"]["predictor"].update(minReplicas=5, maxReplicas=1)
    response = await api.put(f"{ISVCS}/sklearn-iris", json=broken)
    assert response.status_code == 422, response.text
    assert "'MinReplicas' cannot be greater than MaxReplicas" in response.json()["message"]
    stored = (await api.get(f"{ISVCS}/sklearn-iris")).json()
    assert stored["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
