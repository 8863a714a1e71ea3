"""A stock runtime's container as KServe renders it for an InferenceService: placeholders,
KServe's runtime defaults, the model under /mnt/models and nothing appended to the args."""

from __future__ import annotations

from typing import Any

import pytest

from knserve.knative.kserve.inferenceservice import (
    STORAGE_URI_ANNOTATION,
    InvalidInferenceService,
    knative_services,
)
from knserve.knative.kserve.placeholders import NO_VALUE, PlaceholderError, render
from knserve.knative.kserve.runtimes import builtin_runtimes, merge_runtimes


def isvc(model: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "flowers", "namespace": "ml", **meta},
        "spec": {"predictor": {"model": model}},
    }


def predictor(obj: dict[str, Any], runtimes: list[Any] | None = None) -> dict[str, Any]:
    (ksvc,) = knative_services(obj, runtimes if runtimes is not None else builtin_runtimes())
    return ksvc


def container_of(ksvc: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = ksvc["spec"]["template"]["spec"]["containers"][0]
    return found


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def test_placeholders_render_as_go_templates_over_the_object_metadata() -> None:
    meta = {
        "name": "iris",
        "namespace": "ml",
        "labels": {"modelClass": "mlserver_sklearn.SKLearnModel"},
        "annotations": {"modelFormat": "sklearn"},
    }
    assert render("--model_name={{.Name}}@{{ .Namespace }}", meta) == "--model_name=iris@ml"
    assert render("{{.Labels.modelClass}}", meta) == "mlserver_sklearn.SKLearnModel"
    assert render("--framework={{.Annotations.modelFormat}}", meta) == "--framework=sklearn"
    assert render("{{.Labels.absent}}", meta) == NO_VALUE  # Go prints <no value>
    assert render({"env": [{"value": "{{.Name}}"}], "n": 1}, meta) == {
        "env": [{"value": "iris"}],
        "n": 1,
    }
    with pytest.raises(PlaceholderError, match=r"unknown placeholder \{\{.Unknown\}\}"):
        render("{{.Unknown}}", meta)
    with pytest.raises(PlaceholderError, match="unsupported placeholder"):
        render('{{ index .Labels "a" }}', meta)


def test_a_bad_placeholder_in_a_runtime_is_kserve_s_invalid_predictor_spec() -> None:
    runtime = {
        "kind": "ServingRuntime",
        "metadata": {"name": "mine"},
        "spec": {
            "supportedModelFormats": [{"name": "sklearn", "autoSelect": True, "priority": 9}],
            "containers": [{"name": "kserve-container", "image": "me/x", "args": ["{{.Nope}}"]}],
        },
    }
    with pytest.raises(
        InvalidInferenceService,
        match="failed to replace placeholders in serving runtime mine Container kserve-container",
    ) as caught:
        predictor(isvc({"modelFormat": {"name": "sklearn"}}), merge_runtimes([runtime]))
    assert caught.value.reason == "InvalidPredictorSpec"


@pytest.mark.parametrize(
    ("runtime", "args"),
    [
        (
            "kserve-sklearnserver",
            ["--model_name=flowers", "--model_dir=/mnt/models", "--http_port=8080"],
        ),
        (
            "kserve-xgbserver",
            ["--model_name=flowers", "--model_dir=/mnt/models", "--http_port=8080", "--nthread=1"],
        ),
        (
            "kserve-predictiveserver",
            [
                "--model_name=flowers",
                "--model_dir=/mnt/models",
                "--http_port=8080",
                "--framework=sklearn",
                "--nthread=1",
            ],
        ),
        (
            "kserve-tritonserver",
            [
                "tritonserver",
                "--model-store=/mnt/models",
                "--grpc-port=9000",
                "--http-port=8080",
                "--allow-grpc=true",
                "--allow-http=true",
            ],
        ),
    ],
)
def test_a_stock_runtime_s_args_name_the_model_path_and_nothing_is_appended(
    runtime: str, args: list[str]
) -> None:
    format_name = {"kserve-xgbserver": "xgboost", "kserve-tritonserver": "onnx"}.get(
        runtime, "sklearn"
    )
    model = {"modelFormat": {"name": format_name}, "runtime": runtime, "storageUri": "gs://b/m"}
    ksvc = predictor(isvc(model))
    assert container_of(ksvc)["args"] == args
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert annotations[STORAGE_URI_ANNOTATION] == "gs://b/m"
    assert "modelFormat" not in annotations  # KServe keeps it off the revision


def test_the_model_s_args_follow_the_runtime_s_and_render_too() -> None:
    model = {
        "modelFormat": {"name": "sklearn"},
        "storageUri": "gs://b/m",
        "args": ["--enable_docs_url={{.Namespace}}"],
    }
    assert container_of(predictor(isvc(model)))["args"][-2:] == [
        "--http_port=8080",
        "--enable_docs_url=ml",
    ]


def test_mlserver_gets_kserve_s_defaults_in_env_and_labels() -> None:
    model = {"modelFormat": {"name": "mlflow"}, "protocolVersion": "v2", "storageUri": "gs://b/m"}
    ksvc = predictor(isvc(model))
    container = container_of(ksvc)
    assert container["image"] == "docker.io/seldonio/mlserver:1.7.1"
    env = env_of(container)
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "mlserver_mlflow.MLflowRuntime"
    assert env["MLSERVER_MODEL_NAME"] == "flowers"
    assert env["MLSERVER_MODEL_URI"] == "/mnt/models"
    assert (env["MLSERVER_HTTP_PORT"], env["MLSERVER_GRPC_PORT"]) == ("8080", "9000")
    assert ksvc["metadata"]["labels"]["modelClass"] == "mlserver_mlflow.MLflowRuntime"
    assert not container.get("args")
    # without a storage URI MLServer is told not to load models at startup
    named = {"modelFormat": {"name": "xgboost"}, "runtime": "kserve-mlserver"}
    env = env_of(container_of(predictor(isvc(named))))
    assert env["MLSERVER_LOAD_MODELS_AT_STARTUP"] == "false"
    assert env["MLSERVER_MODEL_IMPLEMENTATION"] == "mlserver_xgboost.XGBoostModel"


@pytest.mark.parametrize(("protocol", "envelope"), [(None, "kserve"), ("v2", "kservev2")])
def test_torchserve_gets_its_service_envelope_from_the_protocol(
    protocol: str | None, envelope: str
) -> None:
    model: dict[str, Any] = {"modelFormat": {"name": "pytorch"}, "storageUri": "gs://b/m"}
    if protocol:
        model["protocolVersion"] = protocol
    container = container_of(predictor(isvc(model)))
    env = env_of(container)
    assert env["TS_SERVICE_ENVELOPE"] == envelope
    assert env["PROTOCOL_VERSION"] == (protocol or "v1")
    assert container["args"][:2] == ["torchserve", "--start"]


def test_triton_without_a_storage_uri_loads_models_explicitly() -> None:
    model = {"modelFormat": {"name": "triton"}}  # the webhook defaults triton to v2
    assert container_of(predictor(isvc(model)))["args"][-1] == "--model-control-mode=explicit"


def test_a_user_s_own_annotation_wins_over_the_model_format_default() -> None:
    model = {"modelFormat": {"name": "xgboost"}, "runtime": "kserve-predictiveserver"}
    obj = isvc(model, annotations={"modelFormat": "lightgbm"})
    assert "--framework=lightgbm" in container_of(predictor(obj))["args"]
