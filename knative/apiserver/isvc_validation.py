"""KServe's admission rules for InferenceServices: what its validating webhook refuses at apply time.

KServe's webhook (`pkg/apis/serving/v1beta1/inference_service_validation.go` and `component.go`)
refuses, with these messages:

- a name that is not a DNS-1035 label (`[a-z]([-a-z0-9]*[a-z0-9])?`: `1-sklearn-iris` is refused,
  because the name becomes the first label of the InferenceService's host);
- an unknown `serving.kserve.io/autoscalerClass` annotation;
- a `name` inside a standard predictor (`model`, `sklearn`, …);
- a component with no implementation or more than one: the predictor takes exactly one of
  `model`, a framework key (`sklearn`, `xgboost`, …) or `containers` holding the server (a
  container named `kserve-container`, or the first one when nothing else is given); the
  transformer its `containers`; the explainer `art` or `containers`;
- per component: `containerConcurrency` below 0, `minReplicas`/`maxReplicas` below 0 or min above
  a non-zero max (minReplicas defaults to 1), a logger mode other than all, request or response;
- the autoscaler's rules: with Knative's KPA `scaleMetric` must be concurrency or rps and an rps
  `scaleTarget` at least 1, and `deploymentStrategy` is for raw deployments only; with the HPA
  (Knative's HPA class, or RawDeployment's default `autoscalerClass: hpa`), cpu or memory and a
  cpu target of 1-100 %;
- beyond KServe, what knserve cannot honour is refused rather than ignored: a deploymentMode
  other than Serverless/Knative or RawDeployment/Standard, and in raw mode
  `canaryTrafficPercent` (KServe ignores it there) and `autoscalerClass: keda`;
- a transformer container collocated in the predictor that sets `STORAGE_URI`; `storageUri`
  together with `storageUris`.

`canaryTrafficPercent` has no bounds in KServe's schema, but outside 0..100 it makes a traffic
split Knative's webhook refuses; it is refused here, at apply time, in Knative's words.

Each message is KServe's text prefixed with the field it is about. The storage URI check
(`storage_uri_error`) is KServe's too, but KServe makes it in its controller, and so does
knserve's translation: a bad URI is the InferenceService's `InvalidSpec`, not a refused apply.

Pure functions of plain dicts; `knative.apiserver.kinds` registers `inference_service_errors` for
admission and `knative.kserve.inferenceservice` runs it again before translating (an object on a
cluster may never have passed knserve's admission).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from knserve.knative.apiserver.naming import DNS1035_LABEL
from knserve.knative.apiserver.validation import name_errors

# KServe's deprecated framework keys, defaulted into predictor.model.modelFormat.name.
FRAMEWORK_KEYS = (
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
)
KPA_METRICS = ("concurrency", "rps")
HPA_METRICS = ("cpu", "memory")
AUTOSCALER_CLASS_ANNOTATION = "serving.kserve.io/autoscalerClass"
AUTOSCALER_CLASSES = ("hpa", "external", "keda", "none")
KNATIVE_CLASS_ANNOTATION = "autoscaling.knative.dev/class"
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
RAW_MODES = ("RawDeployment", "Standard")  # RawDeployment is the name before KServe 0.15
DEPLOYMENT_MODES = ("Serverless", "Knative", *RAW_MODES)
SERVER_CONTAINER = "kserve-container"
TRANSFORMER_CONTAINER = "transformer-container"

ISVC_NAME_FORMAT = DNS1035_LABEL.pattern.strip("^$")
# KServe's text after its `the InferenceService "{name}" is invalid: `, which the API's Invalid
# status already begins with.
INVALID_NAME = (
    "a InferenceService name must consist of lower case alphanumeric characters or '-', and must "
    'start with alphabetical character. (e.g. "my-name" or "abc-123", regex used for validation '
    "is '{regex}')"
)
# KServe lists the fields of the component's Go struct (reflection), quirks included.
_ONE_OF = {
    "predictor": (
        "SKLearn, XGBoost, Tensorflow, PyTorch, Triton, ONNX, HuggingFace, PMML, LightGBM, "
        "Paddle, Model, StorageUris, WorkerSpec, PodSpec",
        "PredictorSpec",
    ),
    "transformer": ("PodSpec, ComponentExtensionSpec", "TransformerSpec"),
    "explainer": ("ART, PodSpec, ComponentExtensionSpec", "ExplainerSpec"),
}
SUPPORTED_STORAGE_URI_PREFIXES = (
    "gs://",
    "s3://",
    "pvc://",
    "file://",
    "https://",
    "http://",
    "hdfs://",
    "webhdfs://",
    "oci://",
    "hf://",
)
_AZURE_BLOB = re.compile(r"https://(.+?).blob.core.windows.net/(.+)")
_HAS_SCHEME = re.compile(r"\w+?://")


def implementations(comp: Mapping[str, Any], component: str) -> list[str]:
    """The fields of `comp` that implement the component, counted as KServe counts them."""
    containers = comp.get("containers") or []
    if component == "predictor":
        # A key that is present counts even when empty (`sklearn: {}`), as a Go pointer does.
        found = [k for k in (*FRAMEWORK_KEYS, "model") if comp.get(k) is not None]
        serves = any(c.get("name") == SERVER_CONTAINER for c in containers)
        # Other containers beside a model are sidecars (a collocated transformer).
        if serves or (containers and not found):
            found.append("containers")
        return found
    found = [k for k in ("art", "alibi") if component == "explainer" and comp.get(k) is not None]
    return found + (["containers"] if containers else [])


def inference_service_errors(obj: dict[str, Any]) -> list[str]:
    """KServe's webhook rules (module docstring); each message names its field."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    if not DNS1035_LABEL.match(name):
        errors = [f"metadata.name: {INVALID_NAME.format(regex=ISVC_NAME_FORMAT)}"]
    else:
        errors = name_errors(obj)  # the label's length
    annotations = meta.get("annotations") or {}
    autoscaler = annotations.get(AUTOSCALER_CLASS_ANNOTATION)
    if autoscaler is not None and autoscaler not in AUTOSCALER_CLASSES:
        errors.append(
            f"metadata.annotations[{AUTOSCALER_CLASS_ANNOTATION}]: [{autoscaler}] is "
            f"not a supported autoscaler class type (use {', '.join(AUTOSCALER_CLASSES)})"
        )
    mode = annotations.get(DEPLOYMENT_MODE_ANNOTATION)
    if mode is not None and mode not in DEPLOYMENT_MODES:
        errors.append(
            f"metadata.annotations[{DEPLOYMENT_MODE_ANNOTATION}]: [{mode}] is not a deployment "
            "mode knserve runs (use Serverless or RawDeployment; ModelMesh is not supported)"
        )
    spec = obj.get("spec") or {}
    predictor = spec.get("predictor") or {}
    for key in (*FRAMEWORK_KEYS, "model"):
        if (predictor.get(key) or {}).get("name"):
            errors.append(
                f"spec.predictor.{key}.name: the 'name' field is not allowed in standard predictor"
            )
    errors += _collocation_errors(predictor)
    for component in ("predictor", "transformer", "explainer"):
        comp = spec.get(component)
        if comp is not None:
            errors += component_errors(comp, component, annotations)
    return errors


def component_errors(
    comp: Mapping[str, Any], component: str, annotations: Mapping[str, str]
) -> list[str]:
    """One component's rules: its implementation, its extension fields and its autoscaling."""
    path = f"spec.{component}"
    found = implementations(comp, component)
    errors = []
    if len(found) != 1:
        fields, struct = _ONE_OF[component]
        errors.append(
            f"{path}: exactly one of [{fields}] must be specified in {struct}; found: "
            f"{' and '.join(found) or 'none'}"
        )
    concurrency = comp.get("containerConcurrency")
    if concurrency is not None and int(concurrency) < 0:
        errors.append(
            f"{path}.containerConcurrency: parallelism cannot be less than 0 "
            f"(it is {concurrency}; 0 means no limit)"
        )
    errors += _replica_errors(comp, path)
    logger = comp.get("logger")
    if logger is not None and logger.get("mode", "all") not in ("all", "request", "response"):
        errors.append(
            f"{path}.logger.mode: invalid logger type {logger.get('mode')!r} "
            "(use all, request or response)"
        )
    errors += _autoscaling_errors(comp, path, annotations)
    canary = comp.get("canaryTrafficPercent")
    if canary is not None and not 0 <= int(canary) <= 100:
        errors.append(f"{path}.canaryTrafficPercent: expected 0 <= {canary} <= 100")
    storage_uri = (comp.get("model") or {}).get("storageUri")
    if storage_uri is not None and comp.get("storageUris"):
        errors.append(
            f"{path}.storageUris: Setting both StorageURI and StorageURIs is not supported."
        )
    return errors


def storage_uri_error(uri: str) -> str | None:
    """KServe's storage URI rule (its controller's `ValidateStorageURI`); None when supported."""
    if not _HAS_SCHEME.search(uri):  # a local path
        return None
    if "blob.core.windows.net" in uri:
        if _AZURE_BLOB.search(uri):
            return None
    elif uri.startswith(SUPPORTED_STORAGE_URI_PREFIXES):
        return None
    return (
        "StorageURI not supported: storageUri, must be one of: "
        f"[{', '.join(SUPPORTED_STORAGE_URI_PREFIXES)}] or match "
        "https://{}.blob.core.windows.net/{}/{} or be an absolute or relative local path. "
        f"StorageUri [{uri}] is not supported"
    )


def _replica_errors(comp: Mapping[str, Any], path: str) -> list[str]:
    min_replicas = int(comp["minReplicas"]) if comp.get("minReplicas") is not None else 1
    max_replicas = int(comp.get("maxReplicas") or 0)
    if min_replicas < 0:
        return [f"{path}.minReplicas: 'MinReplicas' cannot be less than 0 (it is {min_replicas})"]
    if max_replicas < 0:
        return [f"{path}.maxReplicas: 'MaxReplicas' cannot be less than 0 (it is {max_replicas})"]
    if min_replicas > max_replicas and max_replicas != 0:
        return [
            f"{path}.minReplicas: 'MinReplicas' cannot be greater than MaxReplicas "
            f"({min_replicas} > {max_replicas}); raise maxReplicas, or set it to 0 for no limit"
        ]
    return []


def _autoscaling_errors(
    comp: Mapping[str, Any], path: str, annotations: Mapping[str, str]
) -> list[str]:
    """KServe's `validateAutoScalingCompExtension`: the HPA's rules or the KPA's."""
    mode = annotations.get(DEPLOYMENT_MODE_ANNOTATION)
    metric = comp.get("scaleMetric")
    target = comp.get("scaleTarget")
    if mode in RAW_MODES:
        raw = _raw_mode_errors(comp, path, annotations)
        if raw or annotations.get(AUTOSCALER_CLASS_ANNOTATION, "hpa") != "hpa":
            return raw
    elif annotations.get(KNATIVE_CLASS_ANNOTATION) != "hpa.autoscaling.knative.dev":
        if comp.get("deploymentStrategy") is not None:
            return [
                f"{path}.deploymentStrategy: customizing deploymentStrategy is only "
                "supported for raw deployment mode"
            ]
        metric = metric or "concurrency"
        if metric not in KPA_METRICS:
            return [
                f"{path}.scaleMetric: [{metric}] is not a supported metric (Knative's "
                f"autoscaler scales on {' or '.join(KPA_METRICS)}; for cpu or memory set "
                f"the annotation {KNATIVE_CLASS_ANNOTATION}: hpa.autoscaling.knative.dev, or "
                f"{DEPLOYMENT_MODE_ANNOTATION}: RawDeployment)"
            ]
        if metric == "rps" and target is not None and int(target) < 1:
            return [f"{path}.scaleTarget: the target for rps should be greater than 1"]
        return []
    metric = metric or "cpu"
    if metric not in HPA_METRICS:
        return [
            f"{path}.scaleMetric: [{metric}] is not a supported metric (the HPA scales on "
            f"{' or '.join(HPA_METRICS)})"
        ]
    if target is not None:
        # KServe's precedence: (cpu and below 1) or above 100, whatever the metric.
        if (metric == "cpu" and int(target) < 1) or int(target) > 100:
            return [
                f"{path}.scaleTarget: the target utilization percentage should be a [1-100] integer"
            ]
        if metric == "memory" and int(target) < 1:
            return [f"{path}.scaleTarget: the target memory should be greater than 1 MiB"]
    return []


def _raw_mode_errors(
    comp: Mapping[str, Any], path: str, annotations: Mapping[str, str]
) -> list[str]:
    """Beyond KServe's webhook: what raw mode would silently skip, or knserve cannot run or
    export, refused with the reason."""
    errors = []
    if comp.get("canaryTrafficPercent") is not None:
        errors.append(
            f"{path}.canaryTrafficPercent: RawDeployment mode has no revisions to split traffic "
            "between (KServe ignores it there); remove it, or use the Serverless mode for a canary"
        )
    if annotations.get(AUTOSCALER_CLASS_ANNOTATION) == "keda":
        errors.append(
            f"metadata.annotations[{AUTOSCALER_CLASS_ANNOTATION}]: [keda] needs KEDA on a "
            "cluster; knserve runs and exports RawDeployment with hpa, external or none"
        )
    return errors


def _collocation_errors(predictor: Mapping[str, Any]) -> list[str]:
    for index, container in enumerate(predictor.get("containers") or []):
        if container.get("name") == TRANSFORMER_CONTAINER:
            if any(e.get("name") == "STORAGE_URI" for e in container.get("env") or []):
                return [
                    f"spec.predictor.containers[{index}].env: storage uri should not be "
                    "specified in transformer container"
                ]
            break
    return []
