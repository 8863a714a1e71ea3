"""The storage-initializer contract in the translation and the status: a component's storage URI
becomes the template annotation KServe's webhook reads (never an argument), custom containers name
theirs by `STORAGE_URI` as in KServe, and the fetch's progress reaches the Revision and an
Unknown `PredictorReady`."""

from __future__ import annotations

from typing import Any

import pytest

from knserve.knative.kserve.inferenceservice import (
    InvalidInferenceService,
    Target,
    knative_services,
)
from knserve.knative.kserve.runtimes import builtin_runtimes
from knserve.knative.kserve.status import isvc_status
from knserve.knative.serving.status import revision_conditions

SOURCE = "internal.serving.kserve.io/storage-initializer-sourceuri"


def translate(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    obj = {"metadata": {"name": "m", "namespace": "default"}, "spec": spec}
    services = knative_services(obj, builtin_runtimes())
    return {s["metadata"]["labels"]["component"]: s["spec"]["template"] for s in services}


def test_a_models_storage_uri_is_an_annotation_and_the_runtime_reads_mnt_models() -> None:
    model = {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://bucket/iris"}
    template = translate({"predictor": {"model": model}})["predictor"]
    assert template["metadata"]["annotations"][SOURCE] == "s3://bucket/iris"
    args = template["spec"]["containers"][0]["args"]
    assert "--model_dir=/mnt/models" in args
    assert not any(a.startswith("--storage_uri") for a in args)


def test_custom_containers_name_their_model_by_storage_uri_env() -> None:
    env = [{"name": "STORAGE_URI", "value": "gs://b/transformer"}]
    templates = translate(
        {
            "predictor": {
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": "me/p",
                        "env": [{"name": "STORAGE_URI", "value": "pvc://claim/model"}],
                    }
                ]
            },
            "transformer": {"containers": [{"image": "me/t", "env": env}]},
            "explainer": {"containers": [{"image": "me/e"}]},
        }
    )
    assert templates["predictor"]["metadata"]["annotations"][SOURCE] == "pvc://claim/model"
    assert templates["transformer"]["metadata"]["annotations"][SOURCE] == "gs://b/transformer"
    assert SOURCE not in templates["explainer"]["metadata"]["annotations"]
    # the env stays as given: KServe's webhook (or the plane's initializer) points it at the model
    assert templates["transformer"]["spec"]["containers"][0]["env"][0] == env[0]


def test_a_storage_uri_env_of_an_unsupported_scheme_is_refused() -> None:
    container = {"image": "me/p", "env": [{"name": "STORAGE_URI", "value": "ftp://h/m"}]}
    with pytest.raises(InvalidInferenceService, match="STORAGE_URI"):
        translate({"predictor": {"containers": [container]}})


def test_the_fetch_progress_is_the_message_of_a_deploying_revision() -> None:
    progress = "storage-initializer: fetching gs://b/m (1.0 of 4.0 MiB, 25%)"
    conditions = revision_conditions(
        None, initialized=False, failure=None, active="Unknown", deploying=progress
    )
    by_type = {c["type"]: c for c in conditions}
    assert by_type["Ready"]["status"] == "Unknown"
    assert by_type["Ready"]["reason"] == "Deploying"
    assert by_type["Ready"]["message"] == progress
    assert by_type["ContainerHealthy"]["message"] == progress


def test_an_unknown_predictor_ready_carries_the_revisions_progress() -> None:
    progress = "storage-initializer: fetching gs://b/m (1.0 of 4.0 MiB, 25%)"
    obj = {
        "metadata": {"name": "m", "namespace": "default"},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
    }
    deploying = {"type": "Ready", "status": "Unknown", "reason": "Deploying"}
    ksvc = {
        "status": {
            "latestCreatedRevisionName": "m-predictor-00001",
            "conditions": [deploying, {**deploying, "type": "ConfigurationsReady"}],
        }
    }
    revision = {
        "metadata": {"name": "m-predictor-00001"},
        "status": {"conditions": [{**deploying, "message": progress}], "desiredReplicas": 1},
    }
    status = isvc_status(obj, {"predictor": ksvc}, "T0", Target(), revision)
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["PredictorReady"]["message"] == progress
    assert by_type["Ready"]["message"] == progress  # what `knserve isvc create --wait` prints
    assert status["modelStatus"]["states"]["targetModelState"] == "Loading"  # as KServe says


def test_on_a_cluster_the_runtime_also_gets_the_uri_as_kserves_custom_containers_do() -> None:
    obj = {
        "metadata": {"name": "m", "namespace": "default"},
        "spec": {"predictor": {"sklearn": {"storageUri": "gs://b/m"}}},
    }
    (cluster,) = knative_services(obj, builtin_runtimes(), Target(cluster=True))
    (local,) = knative_services(obj, builtin_runtimes())
    env = cluster["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "STORAGE_URI", "value": "gs://b/m"} in env
    assert cluster["spec"]["template"]["metadata"]["annotations"][SOURCE] == "gs://b/m"
    local_env = local["spec"]["template"]["spec"]["containers"][0]["env"]
    assert not any(e["name"] == "STORAGE_URI" for e in local_env)  # the plane's initializer runs
