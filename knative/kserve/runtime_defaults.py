"""KServe's defaults around runtime selection, on plain dicts.

Before selection, KServe's defaulting webhook gives triton and vLLM models protocol v2 and
records the model format as the InferenceService's `modelFormat` annotation (the
predictiveserver's `--framework={{.Annotations.modelFormat}}` reads it). After selection,
`SetRuntimeDefaults` adds what the chosen server needs, by the runtime's
`serving.kserve.io/server-type` annotation (else its well-known name):

- mlserver: protocol v2, `MLSERVER_MODEL_NAME` and `MLSERVER_MODEL_URI=/mnt/models` with a
  storage URI (else `MLSERVER_LOAD_MODELS_AT_STARTUP=false`), and the `modelClass` label its
  runtime's `{{.Labels.modelClass}}` reads;
- torchserve: protocol v1, the `serviceEnvelope` label (`kserve`, `kservev2` for v2) and
  `PROTOCOL_VERSION`;
- tritonserver: protocol v2, `--model-control-mode=explicit` without a storage URI.

Finally a model without a protocol gets its runtime's lowest one.
"""

from __future__ import annotations

from typing import Any

from knserve.knative.kserve.runtimes import SupportedRuntime, lowest_protocol

MODEL_FORMAT_ANNOTATION = "modelFormat"
SERVER_TYPE_ANNOTATION = "serving.kserve.io/server-type"
MODEL_CLASS_LABEL = "modelClass"
SERVICE_ENVELOPE_LABEL = "serviceEnvelope"
MOUNT_PATH = "/mnt/models"  # where KServe's storage initializer puts the model
_SERVER_BY_NAME = {
    "kserve-mlserver": "mlserver",
    "kserve-torchserve": "torchserve",
    "kserve-tritonserver": "tritonserver",
    "kserve-tensorflow-serving": "tensorflow-serving",
    "kserve-huggingfaceserver": "huggingfaceserver",
    "kserve-vllmserver": "vllmserver",
}
_MLSERVER_CLASSES = {
    "xgboost": "mlserver_xgboost.XGBoostModel",
    "lightgbm": "mlserver_lightgbm.LightGBMModel",
    "mlflow": "mlserver_mlflow.MLflowRuntime",
}
_MLSERVER_SKLEARN = "mlserver_sklearn.SKLearnModel"


def default_before_selection(meta: dict[str, Any], model: dict[str, Any]) -> None:
    """The webhook's defaults (in place): v2 for triton and vLLM, the modelFormat annotation."""
    format_name = (model.get("modelFormat") or {}).get("name")
    if not model.get("protocolVersion") and format_name in ("triton", "vLLM"):
        model["protocolVersion"] = "v2"
    if format_name:
        annotations = meta.setdefault("annotations", {})
        annotations.setdefault(MODEL_FORMAT_ANNOTATION, format_name)


def server_type(runtime: SupportedRuntime) -> str:
    """The runtime's server type: its annotation, else KServe's name-based fallback."""
    if SERVER_TYPE_ANNOTATION in runtime.annotations:
        return runtime.annotations[SERVER_TYPE_ANNOTATION]
    return _SERVER_BY_NAME.get(runtime.name, "")


def default_after_selection(
    meta: dict[str, Any], model: dict[str, Any], runtime: SupportedRuntime
) -> None:
    """`SetRuntimeDefaults` and the protocol default (in place; see the module docstring)."""
    kind = server_type(runtime)
    labels = meta.setdefault("labels", {})
    has_storage = bool(model.get("storageUri") or model.get("storage"))
    env = model.setdefault("env", [])
    if kind == "mlserver":
        model.setdefault("protocolVersion", "v2")
        if has_storage:
            _env_if_absent(env, "MLSERVER_MODEL_NAME", meta.get("name", ""))
            _env_if_absent(env, "MLSERVER_MODEL_URI", MOUNT_PATH)
        else:
            _env_if_absent(env, "MLSERVER_LOAD_MODELS_AT_STARTUP", "false")
        format_name = (model.get("modelFormat") or {}).get("name", "")
        labels[MODEL_CLASS_LABEL] = _MLSERVER_CLASSES.get(format_name, _MLSERVER_SKLEARN)
    elif kind == "torchserve":
        model.setdefault("protocolVersion", "v1")
        v2 = model["protocolVersion"] in ("v2", "grpc-v2")
        labels[SERVICE_ENVELOPE_LABEL] = "kservev2" if v2 else "kserve"
        env.append({"name": "PROTOCOL_VERSION", "value": model["protocolVersion"]})
    elif kind == "tritonserver":
        model.setdefault("protocolVersion", "v2")
        if not has_storage:
            model["args"] = [*(model.get("args") or []), "--model-control-mode=explicit"]
    if not model.get("protocolVersion"):
        model["protocolVersion"] = lowest_protocol(runtime.spec.get("protocolVersions"))


def _env_if_absent(env: list[dict[str, Any]], name: str, value: str) -> None:
    if not any(e.get("name") == name for e in env):
        env.append({"name": name, "value": value})
