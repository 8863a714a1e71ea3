"""The InferenceService translation: KServe's field mapping, runtimes, canary traffic and status."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from knserve.knative.apiserver.release_images import package_version
from knserve.knative.kserve.inferenceservice import (
    InvalidInferenceService,
    Target,
    component_traffic,
    knative_services,
    predictor_model,
)
from knserve.knative.kserve.runtimes import (
    RuntimeNotFound,
    builtin_runtimes,
    merge_runtimes,
    select_runtime,
)
from knserve.knative.kserve.status import component_status, isvc_status

SKLEARN_IRIS: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "sklearn-iris", "namespace": "default", "uid": "u-1"},
    "spec": {
        "predictor": {
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "file:///models/iris"}
        }
    },
}


def isvc(**predictor: Any) -> dict[str, Any]:
    obj = copy.deepcopy(SKLEARN_IRIS)
    obj["spec"]["predictor"].update(predictor)
    return obj


def only(services: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(services) == 1
    return services[0]


def test_sklearn_iris_becomes_one_predictor_service_running_the_builtin_runtime() -> None:
    ksvc = only(knative_services(SKLEARN_IRIS, builtin_runtimes()))
    assert ksvc["metadata"]["name"] == "sklearn-iris-predictor"
    assert ksvc["metadata"]["labels"]["serving.kserve.io/inferenceservice"] == "sklearn-iris"
    assert ksvc["metadata"]["labels"]["component"] == "predictor"
    owner = ksvc["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "InferenceService",
        "sklearn-iris",
        "u-1",
        True,
    )
    container = ksvc["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "kserve-container"
    # KServe's stock kserve-sklearnserver, its args as KServe renders them; the model's URI goes
    # to the storage initializer, which maps /mnt/models to the downloaded folder
    assert container["image"] == "kserve/sklearnserver:v0.21.0"
    assert container["args"] == [
        "--model_name=sklearn-iris",
        "--model_dir=/mnt/models",
        "--http_port=8080",
    ]
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["internal.serving.kserve.io/storage-initializer-sourceuri"] == (
        "file:///models/iris"
    )
    assert annotations["autoscaling.knative.dev/min-scale"] == "1"  # KServe's default
    assert "autoscaling.knative.dev/max-scale" not in annotations
    assert ksvc["spec"]["traffic"] == [{"tag": "latest", "latestRevision": True, "percent": 100}]


@pytest.mark.parametrize(
    ("framework", "image"),
    [
        ("sklearn", "kserve/sklearnserver:v0.21.0"),
        ("xgboost", "kserve/xgbserver:v0.21.0"),
        ("lightgbm", "kserve/lgbserver:v0.21.0"),
        ("onnx", f"knserve/runtime:{package_version()}"),
        ("pytorch", "pytorch/torchserve-kfs:0.9.0"),
    ],
)
def test_framework_shorthand_selects_the_runtime_of_that_format(framework: str, image: str) -> None:
    obj = copy.deepcopy(SKLEARN_IRIS)
    obj["spec"]["predictor"] = {framework: {"storageUri": "file:///m"}}
    ksvc = only(knative_services(obj, builtin_runtimes()))
    container = ksvc["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == image
    assert not any("storage_uri" in a for a in container["args"])  # nothing appended
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["internal.serving.kserve.io/storage-initializer-sourceuri"] == "file:///m"


def test_component_fields_map_to_knative_annotations_and_spec() -> None:
    obj = isvc(
        minReplicas=0,
        maxReplicas=4,
        scaleTarget=5,
        scaleMetric="rps",
        containerConcurrency=2,
        timeout=30,
        annotations={"a": "b"},
        labels={"team": "ml"},
    )
    ksvc = only(knative_services(obj, builtin_runtimes()))
    template = ksvc["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert annotations["autoscaling.knative.dev/max-scale"] == "4"
    assert annotations["autoscaling.knative.dev/target"] == "5"
    assert annotations["autoscaling.knative.dev/metric"] == "rps"
    assert annotations["a"] == "b"
    assert template["metadata"]["labels"]["team"] == "ml"
    assert template["spec"]["containerConcurrency"] == 2
    assert template["spec"]["timeoutSeconds"] == 30
    assert template["spec"]["responseStartTimeoutSeconds"] == 30


def test_batcher_and_logger_reach_the_runtime_as_environment_and_kserve_annotations() -> None:
    obj = isvc(
        batcher={"maxBatchSize": 8, "maxLatency": 50},
        logger={"mode": "request", "url": "http://sink.default.localhost"},
    )
    ksvc = only(knative_services(obj, builtin_runtimes()))
    env = {e["name"]: e["value"] for e in ksvc["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KNSERVE_MAX_BATCH_SIZE"] == "8"
    assert env["KNSERVE_MAX_LATENCY_MS"] == "50"
    assert env["KNSERVE_LOGGER_URL"] == "http://sink.default.localhost"
    assert env["KNSERVE_LOGGER_MODE"] == "request"
    assert env["INFERENCE_SERVICE_NAME"] == obj["metadata"]["name"]
    assert env["POD_NAMESPACE"] == obj["metadata"].get("namespace", "default")
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["internal.serving.kserve.io/batcher-max-batchsize"] == "8"
    assert annotations["internal.serving.kserve.io/logger-mode"] == "request"


@pytest.mark.parametrize(
    ("predictor", "message"),
    [
        pytest.param({"minReplicas": -1}, "'MinReplicas' cannot be less than 0", id="negative-min"),
        pytest.param(
            {"minReplicas": 3, "maxReplicas": 2},
            "'MinReplicas' cannot be greater than MaxReplicas",
            id="max-below-min",
        ),
        pytest.param({"scaleMetric": "cpu"}, "concurrency or rps", id="hpa-metric"),
        pytest.param(
            {"canaryTrafficPercent": 120}, "expected 0 <= 120 <= 100", id="canary-over-100"
        ),
        pytest.param(
            {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "ftp://host/m"}},
            "StorageURI not supported: storageUri, must be one of: \\[gs://",
            id="storage-uri",
        ),
        pytest.param({"logger": {"mode": "all"}}, "logger.url is required", id="logger-no-url"),
        pytest.param({"sklearn": {"storageUri": "x"}}, "exactly one of", id="two-implementations"),
    ],
)
def test_invalid_components_are_refused_with_the_field_and_fix(
    predictor: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInferenceService, match=message):
        knative_services(isvc(**predictor), builtin_runtimes())


def test_unknown_model_format_lists_the_formats_that_are_served() -> None:
    obj = isvc(model={"modelFormat": {"name": "cobol"}, "storageUri": "file:///m"})
    with pytest.raises(InvalidInferenceService, match=r"cobol.*auto-selected: .*sklearn"):
        knative_services(obj, builtin_runtimes())


def test_model_container_fields_override_the_runtime() -> None:
    obj = isvc(
        model={
            "modelFormat": {"name": "sklearn"},
            "storageUri": "file:///m",
            "image": "me/custom:1",
            "args": ["--workers=2"],
            "env": [{"name": "X", "value": "1"}],
        }
    )
    container = only(knative_services(obj, builtin_runtimes()))["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["image"] == "me/custom:1"
    assert container["args"][-1] == "--workers=2"
    assert {"name": "X", "value": "1"} in container["env"]


def test_transformer_and_explainer_are_given_the_predictor_host() -> None:
    obj = copy.deepcopy(SKLEARN_IRIS)
    obj["spec"]["transformer"] = {"containers": [{"image": "t", "args": ["--model_name", "x"]}]}
    obj["spec"]["explainer"] = {"containers": [{"name": "kserve-container", "image": "e"}]}
    predictor, transformer, explainer = knative_services(obj, builtin_runtimes())
    assert predictor["metadata"]["name"] == "sklearn-iris-predictor"
    assert transformer["metadata"]["name"] == "sklearn-iris-transformer"
    assert explainer["metadata"]["name"] == "sklearn-iris-explainer"
    t_container = transformer["spec"]["template"]["spec"]["containers"][0]
    host = "sklearn-iris-predictor.default.localhost"
    # The user's --model_name is kept; the missing flags are appended, as KServe does.
    assert t_container["args"] == [
        "--model_name",
        "x",
        "--predictor_host",
        host,
        "--http_port",
        "$(PORT)",
    ]
    assert {"name": "PREDICTOR_HOST", "value": host} in t_container["env"]
    e_container = explainer["spec"]["template"]["spec"]["containers"][0]
    assert ["--predictor_host", host] == e_container["args"][2:4]


def test_on_a_cluster_components_use_cluster_local_names_and_port_8080() -> None:
    obj = copy.deepcopy(SKLEARN_IRIS)
    obj["spec"]["transformer"] = {"containers": [{"image": "t"}]}
    _, transformer = knative_services(obj, builtin_runtimes(), Target(cluster=True))
    args = transformer["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [
        "--model_name",
        "sklearn-iris",
        "--predictor_host",
        "sklearn-iris-predictor.default",
        "--http_port",
        "8080",
    ]


@pytest.mark.parametrize(
    ("explainer", "template"),
    [
        ({"art": {"type": "SquareAttack"}}, "-t explainer"),
        (
            {"alibi": {"type": "AnchorTabular", "storageUri": "gs://bucket/anchors"}},
            "-t anchors-explainer",
        ),
    ],
)
def test_explainer_art_and_alibi_are_refused_with_the_alternative(
    explainer: dict[str, Any], template: str
) -> None:
    obj = copy.deepcopy(SKLEARN_IRIS)
    obj["spec"]["explainer"] = explainer
    with pytest.raises(InvalidInferenceService, match="explainer.containers") as refused:
        knative_services(obj, builtin_runtimes())
    assert f"knserve func create {template}`" in str(refused.value)


@pytest.mark.parametrize(
    ("percent", "rolled_out", "expected"),
    [
        pytest.param(None, None, [("latest", True, None, 100)], id="first-deploy"),
        pytest.param(10, None, [("latest", True, None, 100)], id="canary-on-first-deploy"),
        pytest.param(None, "r-1", [("latest", True, None, 100)], id="promoted"),
        pytest.param(100, "r-1", [("latest", True, None, 100)], id="canary-100"),
        pytest.param(
            10, "r-1", [("latest", True, None, 10), ("prev", False, "r-1", 90)], id="canary-10"
        ),
        pytest.param(
            0, "r-1", [("latest", True, None, 0), ("prev", False, "r-1", 100)], id="rollback"
        ),
    ],
)
def test_canary_traffic_follows_kserve(
    percent: int | None, rolled_out: str | None, expected: list[tuple[Any, ...]]
) -> None:
    traffic = component_traffic(percent, rolled_out)
    got = [(t["tag"], t["latestRevision"], t.get("revisionName"), t["percent"]) for t in traffic]
    assert got == expected
    assert sum(t["percent"] for t in traffic) == 100


def ksvc_with(latest_ready: str, traffic: list[tuple[str, int]], ready: str = "True") -> dict:
    return {
        "status": {
            "url": "http://sklearn-iris-predictor.default.localhost",
            "latestCreatedRevisionName": latest_ready,
            "latestReadyRevisionName": latest_ready,
            # the first entry is the `latestRevision` one, as the translation writes it
            "traffic": [
                {"revisionName": r, "percent": p, "latestRevision": i == 0}
                for i, (r, p) in enumerate(traffic)
            ],
            "conditions": [{"type": "Ready", "status": ready}],
        }
    }


def test_rolled_out_revisions_track_promotion_and_rollback() -> None:
    # v1 at 100 %: rolled out.
    first = component_status(ksvc_with("p-00001", [("p-00001", 100)]), {})
    assert first["latestRolledoutRevision"] == "p-00001"
    assert "previousRolledoutRevision" not in first
    # canary 10 %: v2 ready but not rolled out.
    canary = component_status(ksvc_with("p-00002", [("p-00002", 10), ("p-00001", 90)]), first)
    assert canary["latestRolledoutRevision"] == "p-00001"
    # promoted: v2 at 100 %.
    promoted = component_status(ksvc_with("p-00002", [("p-00002", 100)]), canary)
    assert promoted["latestRolledoutRevision"] == "p-00002"
    assert promoted["previousRolledoutRevision"] == "p-00001"
    # rollback (v3 at 0 %): v2 stays the rolled-out revision.
    rolled_back = component_status(
        ksvc_with("p-00003", [("p-00003", 0), ("p-00002", 100)]), promoted
    )
    assert rolled_back["latestRolledoutRevision"] == "p-00002"
    # canary 0 after the promote: at first `prev` still names v2 itself, which holds 100 % in
    # all while its latest entry holds 0 %: KServe's rule rolls back to the previous one.
    back = component_status(ksvc_with("p-00002", [("p-00002", 0), ("p-00002", 100)]), promoted)
    assert back["latestRolledoutRevision"] == "p-00001"
    # once `prev` names v1, nothing moves any more
    settled = component_status(ksvc_with("p-00002", [("p-00002", 0), ("p-00001", 100)]), back)
    assert settled["latestRolledoutRevision"] == "p-00001"


def test_isvc_status_is_ready_only_when_every_component_is() -> None:
    obj = copy.deepcopy(SKLEARN_IRIS)
    obj["spec"]["transformer"] = {"containers": [{"image": "t"}]}
    ready = ksvc_with("p-00001", [("p-00001", 100)])
    failing = ksvc_with("t-00001", [("t-00001", 100)], ready="False")
    status = isvc_status(obj, {"predictor": ready, "transformer": failing}, "T0", Target())
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["PredictorReady"]["status"] == "True"
    assert conds["TransformerReady"]["status"] == "False"
    assert conds["IngressReady"]["status"] == "False"
    assert "Transformer ingress not created" in conds["IngressReady"]["message"]
    assert conds["Ready"]["status"] == "False"
    assert "url" not in status

    obj["status"] = status
    later = isvc_status(obj, {"predictor": ready, "transformer": ready}, "T1", Target())
    conds = {c["type"]: c for c in later["conditions"]}
    assert conds["Ready"]["status"] == "True"
    assert conds["Ready"]["lastTransitionTime"] == "T1"
    assert conds["PredictorReady"]["lastTransitionTime"] == "T0"  # unchanged since T0
    assert later["url"] == "http://sklearn-iris.default.localhost"
    assert later["components"]["predictor"]["latestReadyRevision"] == "p-00001"


def test_runtime_selection_prefers_user_runtimes_and_names_the_choices() -> None:
    user = {
        "kind": "ServingRuntime",
        "metadata": {"name": "my-sklearn"},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "autoSelect": True, "priority": 5}],
            "containers": [{"name": "kserve-container", "image": "me/sk"}],
        },
    }
    runtimes = merge_runtimes([user])
    sklearn = {"modelFormat": {"name": "sklearn"}}
    assert select_runtime(sklearn, runtimes).name == "my-sklearn"
    assert select_runtime({**sklearn, "runtime": "kserve-sklearnserver"}, runtimes).cluster
    with pytest.raises(RuntimeNotFound, match="available: .*kserve-sklearnserver"):
        select_runtime({**sklearn, "runtime": "nope"}, runtimes)
    with pytest.raises(RuntimeNotFound, match="does not support model format 'onnx'"):
        select_runtime({"modelFormat": {"name": "onnx"}, "runtime": "my-sklearn"}, runtimes)


def test_predictor_model_defaults_the_format_from_the_framework_key() -> None:
    assert predictor_model({"xgboost": {"storageUri": "s"}}) == {
        "storageUri": "s",
        "modelFormat": {"name": "xgboost"},
    }
    assert predictor_model({"containers": [{"image": "x"}]}) is None
