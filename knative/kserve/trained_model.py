"""TrainedModel (`serving.kserve.io/v1alpha1`): one more model in an InferenceService's server.

The pure half of KServe's TrainedModel controller (`pkg/controller/v1alpha1/trainedmodel`),
shared by the local plane's controller and the export:

- a predictor is a *multi-model* one (KServe's `IsMMSPredictor`) when it names no storageUri
  (or, for custom containers, sets `MULTI_MODEL_SERVER=true`); its revision template then
  carries KServe's agent annotations, naming the ConfigMap `modelconfig-{isvc}-0` whose
  `models.json` lists the TrainedModels the server loads (`agent_annotations`);
- KServe's capacity rule: the `memory` of the TrainedModels allocated to an InferenceService may
  not sum past the predictor's `resources.limits.memory` (KServe's default limit, 2Gi, when the
  predictor sets none); TrainedModels are allocated in creation order, each one that fits
  labelled `serving.kserve.io/trainedmodel-allocated`, one that does not left out with
  `MemoryResourceAvailable=False` (`allocate`);
- the status as KServe writes it: `url` and `address.url` (the InferenceService's, with
  `/v1/models/{tm}:predict` or `/v2/models/{tm}/infer`), and the conditions
  `FrameworkSupported` (the framework is among the runtime's supportedModelFormats, as KServe
  checked before 0.10), `InferenceServiceReady`, `IsMMSPredictor`, `MemoryResourceAvailable`,
  and `Ready`, true when they all are, else false with the first failing one's reason — or
  `ModelLoadFailed` with the server's reason when a replica tried to load the model and could
  not (`trained_model_status`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from knserve.knative.apiserver.isvc_validation import implementations
from knserve.knative.apiserver.trained_model_validation import parse_quantity

__all__ = [
    "AGENT_ANNOTATION",
    "ALLOCATED_LABEL",
    "CONFIG_VOLUME_ANNOTATION",
    "PARENT_LABEL",
    "agent_annotations",
    "allocate",
    "is_mms_predictor",
    "model_config_name",
    "predictor_memory_limit",
    "trained_model_status",
]

API_VERSION = "serving.kserve.io/v1alpha1"
KIND = "TrainedModel"
PARENT_LABEL = "inferenceservice"  # KServe's ParentInferenceServiceLabel
ALLOCATED_LABEL = "serving.kserve.io/trainedmodel-allocated"
AGENT_ANNOTATION = "internal.serving.kserve.io/agent"
CONFIG_VOLUME_ANNOTATION = "internal.serving.kserve.io/configVolumeName"
CONFIG_MOUNT_ANNOTATION = "internal.serving.kserve.io/configMountPath"
MODEL_DIR_ANNOTATION = "internal.serving.kserve.io/modelDir"
MODEL_CONFIG_DIR, MODEL_DIR, MODEL_CONFIG_FILE = "/mnt/configs", "/mnt/models", "models.json"
MULTI_MODEL_SERVER_ENV = "MULTI_MODEL_SERVER"
DEFAULT_MEMORY_LIMIT = "2Gi"  # KServe's inferenceservice ConfigMap: resource.memoryLimit
CONDITIONS = (
    "FrameworkSupported",
    "InferenceServiceReady",
    "IsMMSPredictor",
    "MemoryResourceAvailable",
)


# ---- the multi-model predictor -------------------------------------------------------------


def is_mms_predictor(predictor: Mapping[str, Any]) -> bool:
    """KServe's IsMMSPredictor: a model with no storageUri (nor storage, storageUris), not a
    Hugging Face one; custom containers only with `MULTI_MODEL_SERVER=true`."""
    found = implementations(predictor, "predictor")
    if not found:
        return False
    if found == ["containers"]:
        env = (predictor.get("containers") or [{}])[0].get("env") or []
        return any(
            e.get("name") == MULTI_MODEL_SERVER_ENV and e.get("value") == "true" for e in env
        )
    key = found[0]
    model = predictor.get(key) or {}
    fmt = key if key != "model" else (model.get("modelFormat") or {}).get("name")
    if key == "huggingface" or fmt == "huggingface":
        return False
    return not (model.get("storageUri") or model.get("storage") or predictor.get("storageUris"))


def model_config_name(isvc_name: str, shard: int = 0) -> str:
    """KServe's ConfigMap of an InferenceService's TrainedModels."""
    return f"modelconfig-{isvc_name}-{shard}"


def agent_annotations(isvc_name: str, predictor: Mapping[str, Any]) -> dict[str, str]:
    """The revision annotations KServe's controller gives a multi-model predictor (its pod
    webhook injects the model agent on them); {} for any other predictor."""
    if not is_mms_predictor(predictor):
        return {}
    return {
        AGENT_ANNOTATION: "true",
        CONFIG_VOLUME_ANNOTATION: model_config_name(isvc_name),
        CONFIG_MOUNT_ANNOTATION: MODEL_CONFIG_DIR,
        MODEL_DIR_ANNOTATION: MODEL_DIR,
    }


# ---- memory ---------------------------------------------------------------------------------


def predictor_memory_limit(isvc: Mapping[str, Any]) -> Decimal:
    """The predictor server's `resources.limits.memory` (the model's, else the first
    container's), KServe's default 2Gi when unset."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    found = implementations(predictor, "predictor")
    if found and found[0] != "containers":
        resources = (predictor.get(found[0]) or {}).get("resources") or {}
    else:
        resources = ((predictor.get("containers") or [{}])[0]).get("resources") or {}
    limit = (resources.get("limits") or {}).get("memory")
    return parse_quantity(limit if limit is not None else DEFAULT_MEMORY_LIMIT)


def _memory(tm: Mapping[str, Any]) -> Decimal:
    return parse_quantity(((tm.get("spec") or {}).get("model") or {}).get("memory") or "0")


def allocate(trained_models: Sequence[Mapping[str, Any]], limit: Decimal) -> dict[str, bool]:
    """Which TrainedModels (by name) the server's memory holds: the ones already allocated
    (labelled) stay, then the others in creation order while the sum fits under `limit`."""
    fits: dict[str, bool] = {}
    used = Decimal(0)
    allocated = [tm for tm in trained_models if _labels(tm).get(ALLOCATED_LABEL)]
    for tm in allocated:
        used += _memory(tm)
        fits[tm["metadata"]["name"]] = True
    waiting = [tm for tm in trained_models if not _labels(tm).get(ALLOCATED_LABEL)]
    waiting.sort(
        key=lambda tm: (tm["metadata"].get("creationTimestamp") or "", tm["metadata"]["name"])
    )
    for tm in waiting:
        need = _memory(tm)
        ok = used + need <= limit
        if ok:
            used += need
        fits[tm["metadata"]["name"]] = ok
    return fits


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


# ---- status ---------------------------------------------------------------------------------


def predict_path(name: str, protocol: str) -> str:
    """KServe's PredictPath: where a TrainedModel answers, by the predictor's protocol."""
    return f"/v2/models/{name}/infer" if protocol == "v2" else f"/v1/models/{name}:predict"


def predictor_protocol(isvc: Mapping[str, Any]) -> str:
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    found = implementations(predictor, "predictor")
    impl = predictor.get(found[0]) if found and found[0] != "containers" else None
    return str((impl or {}).get("protocolVersion") or "v1")


def _condition(ctype: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
    if ok:
        return {"type": ctype, "status": "True"}
    return {"type": ctype, "status": "False", "reason": reason, "message": message}


def trained_model_status(
    tm: Mapping[str, Any],
    isvc: Mapping[str, Any] | None,
    *,
    fits: bool,
    formats: Iterable[str] | None,
    load_failure: str | None,
    previous: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """The TrainedModel's status (module docstring). `fits` is `allocate`'s answer for it,
    `formats` the predictor runtime's supportedModelFormats (None: a custom container, not
    checked), `load_failure` the reason a replica gave for not loading it."""
    name = tm["metadata"]["name"]
    framework = ((tm.get("spec") or {}).get("model") or {}).get("framework") or ""
    isvc_name = (tm.get("spec") or {}).get("inferenceService") or ""
    status: dict[str, Any] = {}
    if isvc is None:
        found = [
            _condition(
                "InferenceServiceReady",
                False,
                "InferenceServiceNotFound",
                f"InferenceService {isvc_name!r} does not exist in this namespace",
            )
        ]
    else:
        istatus = isvc.get("status") or {}
        path = predict_path(name, predictor_protocol(isvc))
        if istatus.get("url"):
            status["url"] = istatus["url"] + path
        address = (istatus.get("address") or {}).get("url")
        if address:
            status["address"] = {"url": address + path}
        isvc_ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in istatus.get("conditions") or []
        )
        predictor = (isvc.get("spec") or {}).get("predictor") or {}
        supported = formats is None or framework in set(formats)
        found = [
            _condition(
                "FrameworkSupported",
                supported,
                "FrameworkNotSupported",
                f"Inference Service does not support the Trained Model framework {framework!r}"
                + (
                    ""
                    if formats is None
                    else f" (its runtime serves: {', '.join(sorted(formats))})"
                ),
            ),
            _condition(
                "InferenceServiceReady",
                isvc_ready,
                "InferenceServiceNotReady",
                "Inference Service needs to be ready before Trained Model can be ready",
            ),
            _condition(
                "IsMMSPredictor",
                is_mms_predictor(predictor),
                "IsNotMMSPredictor",
                "Inference Service predictor is not configured for multi-model serving "
                "(it names a storageUri)",
            ),
            _condition(
                "MemoryResourceAvailable",
                fits,
                "MemoryResourceNotAvailable",
                "Inference Service does not have enough memory resources for Trained Model "
                f"(the TrainedModels' memory would exceed the predictor's limit "
                f"{_limit_text(isvc)})",
            ),
        ]
    failing = next((c for c in found if c["status"] != "True"), None)
    if failing is not None:
        ready = _condition("Ready", False, failing["reason"], failing["message"])
    elif load_failure:
        ready = _condition("Ready", False, "ModelLoadFailed", load_failure)
    else:
        ready = _condition("Ready", True)
    conditions = sorted([*found, ready], key=lambda c: c["type"])
    old = {c.get("type"): c for c in (previous or {}).get("conditions") or []}
    for cond in conditions:
        before = old.get(cond["type"])
        same = before is not None and before.get("status") == cond["status"]
        cond["lastTransitionTime"] = before.get("lastTransitionTime") if same and before else now
    status["conditions"] = conditions
    if tm["metadata"].get("generation") is not None:  # duckv1.Status: which spec this describes
        status["observedGeneration"] = tm["metadata"]["generation"]
    return status


def _limit_text(isvc: Mapping[str, Any]) -> str:
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    found = implementations(predictor, "predictor")
    impl = predictor.get(found[0]) if found and found[0] != "containers" else None
    if impl is None:
        impl = (predictor.get("containers") or [{}])[0]
    limit = ((impl.get("resources") or {}).get("limits") or {}).get("memory")
    return str(limit) if limit is not None else f"{DEFAULT_MEMORY_LIMIT} (KServe's default)"


def is_ready(tm: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (tm.get("status") or {}).get("conditions") or []
    )


# ---- export for a cluster -----------------------------------------------------------------

MODEL_CONFIG_ENV = "KNSERVE_MODEL_CONFIG"
MODEL_CONFIG_VOLUME = "model-config"  # KServe's ModelConfigVolumeName


def config_entries(
    isvc: Mapping[str, Any],
    trained_models: Sequence[Mapping[str, Any]],
    formats: Iterable[str] | None,
) -> list[dict[str, Any]]:
    """The `models.json` entries of `isvc`'s TrainedModels that its server takes: a multi-model
    predictor, a supported framework, within the memory limit (KServe's modelconfig reconciler
    runs only past those checks)."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    if not is_mms_predictor(predictor):
        return []
    name = isvc["metadata"]["name"]
    mine = [tm for tm in trained_models if (tm.get("spec") or {}).get("inferenceService") == name]
    fits = allocate(mine, predictor_memory_limit(isvc))
    allowed = None if formats is None else set(formats)
    entries = []
    for tm in mine:
        model = tm["spec"]["model"]
        if fits[tm["metadata"]["name"]] and (allowed is None or model["framework"] in allowed):
            spec = {k: str(model[k]) for k in ("storageUri", "framework", "memory")}
            entries.append({"modelName": tm["metadata"]["name"], "modelSpec": spec})
    return entries


def exported_model_config(
    isvc: Mapping[str, Any], predictor_service: dict[str, Any], entries: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """For a cluster without KServe's agent: the ConfigMap `modelconfig-{isvc}-0` holding
    `entries`, mounted (in place, on `predictor_service`) at KServe's `/mnt/configs` and named
    to knserve's runtime by `$KNSERVE_MODEL_CONFIG`, which loads its models at start."""
    import json

    meta = isvc["metadata"]
    config_name = model_config_name(meta["name"])
    template = predictor_service["spec"]["template"]["spec"]
    template.setdefault("volumes", []).append(
        {"name": MODEL_CONFIG_VOLUME, "configMap": {"name": config_name}}
    )
    container = template["containers"][0]
    container.setdefault("volumeMounts", []).append(
        {"name": MODEL_CONFIG_VOLUME, "mountPath": MODEL_CONFIG_DIR, "readOnly": True}
    )
    container.setdefault("env", []).append(
        {"name": MODEL_CONFIG_ENV, "value": f"{MODEL_CONFIG_DIR}/{MODEL_CONFIG_FILE}"}
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_name, "namespace": meta.get("namespace") or "default"},
        "data": {MODEL_CONFIG_FILE: json.dumps(list(entries), indent=2)},
    }
