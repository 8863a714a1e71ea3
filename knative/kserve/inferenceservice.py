"""InferenceService → Knative Services: the translation both targets share.

An InferenceService (`serving.kserve.io/v1beta1`) has a predictor and optionally a transformer
and an explainer. Each component becomes one Knative Service named `{isvc}-{component}`, owned
by the InferenceService, with KServe's mapping of the component fields:

- `minReplicas` → `autoscaling.knative.dev/min-scale` (default 1, as KServe; 0 allows scale to
  zero), `maxReplicas` → `max-scale` (0 means unbounded, so it is left out), `scaleTarget` →
  `target`, `scaleMetric` → `metric`; the class is the KPA unless the InferenceService or the
  component names one (`autoscaling.knative.dev/class: hpa.autoscaling.knative.dev` scales on
  cpu or memory), kept as it is; in RawDeployment mode, the HPA KServe would make, in Knative's
  terms (`knative.kserve.raw_deployment`);
- `containerConcurrency` → `spec.template.spec.containerConcurrency`, `timeout` →
  `timeoutSeconds` and `responseStartTimeoutSeconds`;
- `canaryTrafficPercent` → `spec.traffic` (see `component_traffic`);
- the predictor's model → a ServingRuntime's or ClusterServingRuntime's container, chosen and
  defaulted as KServe does (`knative.kserve.runtimes`, `runtime_defaults`) with its placeholders
  rendered (`placeholders`); its `storageUri` → the storage initializer's annotation
  (`internal.serving.kserve.io/storage-initializer-sourceuri`), the runtime's args name
  `/mnt/models` and nothing is appended to them;
- transformer and explainer → `--model_name`, `--predictor_host` and `PREDICTOR_HOST`, so they
  reach the predictor by its Knative host, as KServe wires them.

KServe's webhook rules (`knative.apiserver.isvc_validation`) are checked first, since an object on a
cluster may never have passed knserve's admission, and the storage URI as KServe's controller
checks it. Everything here is a pure function of plain dicts, so the local controller, the kopf
operator and `knserve export` produce the same objects.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from knserve.knative.apiserver.isvc_validation import (
    SERVER_CONTAINER,
    implementations,
    inference_service_errors,
    storage_uri_error,
)
from knserve.knative.apiserver.naming import hostname
from knserve.knative.kserve.placeholders import PlaceholderError, replace_placeholders
from knserve.knative.kserve.raw_deployment import is_raw, raw_autoscaling_annotations
from knserve.knative.kserve.runtime_defaults import (
    default_after_selection,
    default_before_selection,
)
from knserve.knative.kserve.runtimes import RuntimeNotFound, select_runtime
from knserve.knative.kserve.trained_model import agent_annotations

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
COMPONENTS = ("predictor", "transformer", "explainer")
ISVC_LABEL = "serving.kserve.io/inferenceservice"
COMPONENT_LABEL = "component"
# Where KServe's controller puts a component's storage URI for its storage initializer (which
# fetches it into /mnt/models), and the container env that names it on custom containers.
STORAGE_URI_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"
STORAGE_URI_ENV = "STORAGE_URI"
GRPC_V2 = "grpc-v2"
# The port KServe's servers serve the Open Inference Protocol's gRPC on, named as Knative names
# a port it carries HTTP/2 cleartext to.
GRPC_V2_PORT = {"name": "h2c", "containerPort": 8081, "protocol": "TCP"}
# Annotations that describe the InferenceService object itself and must not leak into revisions
# (KServe's ServiceAnnotationDisallowedList, for those knserve meets).
_NOT_PROPAGATED = ("kubectl.kubernetes.io/last-applied-configuration", "modelFormat")


class InvalidInferenceService(ValueError):
    """The InferenceService cannot be translated; the message names the field and the fix.

    `reason` is KServe's FailureReason for the model status when the predictor is at fault.
    """

    def __init__(self, message: str, reason: str = "InvalidPredictorSpec") -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """Where the Knative Services will run, which decides how components address each other.

    Locally, a component reaches another through the gateway by its full host
    (`{name}.{namespace}.{domain}`) and listens on `$PORT`; on a cluster it uses the
    cluster-local name `{name}.{namespace}` and Knative's port 8080, as KServe does.
    """

    domain: str = "localhost"
    cluster: bool = False

    def service_host(self, name: str, namespace: str) -> str:
        return f"{name}.{namespace}" if self.cluster else hostname(name, namespace, self.domain)

    @property
    def http_port(self) -> str:
        return "8080" if self.cluster else "$(PORT)"


LOCAL = Target()


def component_service_name(isvc_name: str, component: str) -> str:
    """The Knative Service of one component: `{isvc}-predictor`, `{isvc}-transformer`, …"""
    return f"{isvc_name}-{component}"


def components_of(isvc: Mapping[str, Any]) -> list[str]:
    """The components an InferenceService declares, predictor first."""
    spec = isvc.get("spec") or {}
    return [c for c in COMPONENTS if spec.get(c)]


def predictor_model(predictor: Mapping[str, Any]) -> dict[str, Any] | None:
    """`predictor.model`, or a framework shorthand (`sklearn:` …) turned into one; None for containers."""
    found = implementations(predictor, "predictor")
    if len(found) != 1:  # admission refuses this; an object on a cluster may not have passed it
        raise InvalidInferenceService(
            f"spec.predictor must have exactly one of model, containers or a framework key; "
            f"found: {' and '.join(found) or 'none'}"
        )
    if found == ["containers"]:
        return None
    if predictor.get("containers"):
        raise InvalidInferenceService(
            "spec.predictor.containers beside a model (a collocated transformer) is not "
            "supported by knserve; give the transformer as spec.transformer"
        )
    key = found[0]
    model = copy.deepcopy(dict(predictor[key] or {}))
    if key != "model":
        model.setdefault("modelFormat", {"name": key})
    elif not (model.get("modelFormat") or {}).get("name"):
        raise InvalidInferenceService(
            "spec.predictor.model.modelFormat.name is required (for example sklearn, xgboost, "
            "lightgbm, onnx, pytorch)",
            "NoSupportingRuntime",
        )
    return model


def component_traffic(canary_percent: int | None, rolled_out: str | None) -> list[dict[str, Any]]:
    """KServe's canary traffic for one component.

    With no canary (or no revision rolled out yet, or 100 %) the latest ready revision takes all
    traffic. With `canaryTrafficPercent: N` the latest revision gets N % and the last revision that
    was rolled out (held 100 %) keeps the rest under the tag `prev`; N = 0 is a rollback. Because
    `latestRevision: true` follows the latest *ready* revision, a new revision that fails leaves
    every request on the previous one.
    """
    latest: dict[str, Any] = {"tag": "latest", "latestRevision": True, "percent": 100}
    if canary_percent is None or rolled_out is None or canary_percent >= 100:
        return [latest]
    latest["percent"] = canary_percent
    prev = {"tag": "prev", "revisionName": rolled_out, "latestRevision": False}
    prev["percent"] = 100 - canary_percent
    return [latest, prev]


def knative_services(
    isvc: Mapping[str, Any],
    runtimes: Sequence[Mapping[str, Any]],
    target: Target = LOCAL,
    rolled_out: Mapping[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """The Knative Services an InferenceService becomes, one per component.

    `rolled_out` maps a component to its `latestRolledoutRevision` (from the InferenceService's
    status), which the canary traffic needs; it is empty on a first deploy.
    """
    meta = isvc.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    if not name:
        raise InvalidInferenceService("metadata.name is required")
    spec = isvc.get("spec") or {}
    if not spec.get("predictor"):
        raise InvalidInferenceService("spec.predictor is required")
    errors = inference_service_errors(dict(isvc))
    if errors:
        raise InvalidInferenceService("; ".join(errors))
    rolled_out = rolled_out or {}
    predictor_host = target.service_host(component_service_name(name, "predictor"), namespace)
    services = []
    for component in components_of(isvc):
        comp = spec[component]
        path = f"spec.{component}"
        extra: dict[str, str] = {}
        if component == "predictor":
            container, extra = _predictor_container(comp, meta, runtimes)
        else:
            container = _chained_container(comp, path, name, predictor_host, target)
        storage_uri = _storage_uri(comp, component, container)
        if storage_uri and target.cluster:
            # Where no KServe webhook adds the storage initializer (knserve's operator on plain
            # Knative), knserve.runtime fetches this itself; KServe's webhook, where it runs,
            # points it at /mnt/models as it does a custom container's.
            container["env"] = _merge_env(
                [{"name": STORAGE_URI_ENV, "value": storage_uri}], container.get("env") or []
            )
        container["env"] = _merge_env(
            container.get("env") or [], _feature_env(comp, component, name, namespace)
        )
        service = _service(isvc, component, comp, container, rolled_out.get(component), extra)
        if storage_uri:  # for KServe's storage initializer, which puts the model at /mnt/models
            service["spec"]["template"]["metadata"]["annotations"][STORAGE_URI_ANNOTATION] = (
                storage_uri
            )
        if component == "predictor":  # a multi-model server: KServe's agent loads TrainedModels
            service["spec"]["template"]["metadata"]["annotations"].update(
                agent_annotations(name, comp)
            )
        services.append(service)
    return services


def _service(
    isvc: Mapping[str, Any],
    component: str,
    comp: Mapping[str, Any],
    container: dict[str, Any],
    rolled_out: str | None,
    runtime_labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    meta = isvc["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    labels = {
        **(meta.get("labels") or {}),
        **(runtime_labels or {}),
        **(comp.get("labels") or {}),
        ISVC_LABEL: name,
        COMPONENT_LABEL: component,
    }
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _NOT_PROPAGATED
    }
    annotations.update(comp.get("annotations") or {})
    annotations.update(_autoscaling_annotations(comp, annotations, container))
    annotations.update(_internal_annotations(comp))
    template_spec: dict[str, Any] = {"containers": [container]}
    if comp.get("containerConcurrency") is not None:
        template_spec["containerConcurrency"] = int(comp["containerConcurrency"])
    if comp.get("timeout") is not None:
        template_spec["timeoutSeconds"] = int(comp["timeout"])
        template_spec["responseStartTimeoutSeconds"] = int(comp["timeout"])
    for field in ("serviceAccountName", "volumes", "nodeSelector", "tolerations", "affinity"):
        if comp.get(field):
            template_spec[field] = copy.deepcopy(comp[field])
    canary = comp.get("canaryTrafficPercent")
    owner = {
        "apiVersion": isvc.get("apiVersion", API_VERSION),
        "kind": KIND,
        "name": name,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    if meta.get("uid"):
        owner["uid"] = meta["uid"]
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": component_service_name(name, component),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": {
            "template": {
                "metadata": {"labels": dict(labels), "annotations": annotations},
                "spec": template_spec,
            },
            "traffic": component_traffic(None if canary is None else int(canary), rolled_out),
        },
    }


def _autoscaling_annotations(
    comp: Mapping[str, Any], annotations: Mapping[str, str], container: Mapping[str, Any]
) -> dict[str, str]:
    """KServe's SetAutoScalingAnnotations: the KPA unless the user named a class (kept as it is,
    for the plane and for a cluster); raw mode's HPA in Knative's terms (`raw_deployment`)."""
    if is_raw(annotations):
        try:
            return raw_autoscaling_annotations(comp, annotations, container)
        except ValueError as exc:
            raise InvalidInferenceService(str(exc)) from None
    prefix = "autoscaling.knative.dev/"
    out = {}
    if f"{prefix}class" not in annotations:
        out[f"{prefix}class"] = "kpa.autoscaling.knative.dev"
    min_replicas = comp.get("minReplicas")
    max_replicas = comp.get("maxReplicas")
    out[f"{prefix}min-scale"] = str(1 if min_replicas is None else int(min_replicas))
    if max_replicas:
        out[f"{prefix}max-scale"] = str(int(max_replicas))
    if comp.get("scaleTarget") is not None:
        out[f"{prefix}target"] = str(int(comp["scaleTarget"]))
    if comp.get("scaleMetric") is not None:
        out[f"{prefix}metric"] = comp["scaleMetric"]
    return out


def _internal_annotations(comp: Mapping[str, Any]) -> dict[str, str]:
    """KServe's internal annotations for the batcher and logger, kept for fidelity on a cluster."""
    out: dict[str, str] = {}
    prefix = "internal.serving.kserve.io/"
    batcher = comp.get("batcher")
    if batcher is not None:
        out[f"{prefix}batcher"] = "BatcherEnabled"
        if batcher.get("maxBatchSize") is not None:
            out[f"{prefix}batcher-max-batchsize"] = str(batcher["maxBatchSize"])
        if batcher.get("maxLatency") is not None:
            out[f"{prefix}batcher-max-latency"] = str(batcher["maxLatency"])
    logger = comp.get("logger")
    if logger is not None:
        out[f"{prefix}logger"] = "true"
        out[f"{prefix}logger-mode"] = logger.get("mode", "all")
        if logger.get("url"):
            out[f"{prefix}logger-sink-url"] = logger["url"]
    return out


def _feature_env(
    comp: Mapping[str, Any], component: str, isvc_name: str, namespace: str
) -> list[dict[str, str]]:
    """The batcher and logger settings as environment for knserve.runtime, which does both in process."""
    env = [{"name": "KNSERVE_COMPONENT", "value": component}]
    batcher = comp.get("batcher")
    if batcher is not None:
        env.append(
            {"name": "KNSERVE_MAX_BATCH_SIZE", "value": str(batcher.get("maxBatchSize", 32))}
        )
        env.append({"name": "KNSERVE_MAX_LATENCY_MS", "value": str(batcher.get("maxLatency", 500))})
        if batcher.get("timeout") is not None:
            env.append({"name": "KNSERVE_BATCH_TIMEOUT_S", "value": str(batcher["timeout"])})
    logger = comp.get("logger")
    if logger is not None:
        mode = logger.get("mode", "all")
        if not logger.get("url"):
            raise InvalidInferenceService(f"spec.{component}.logger.url is required")
        env.append({"name": "KNSERVE_LOGGER_URL", "value": logger["url"]})
        env.append({"name": "KNSERVE_LOGGER_MODE", "value": mode})
        # The events name their InferenceService and namespace (KServe's agent gets them as flags).
        env.append({"name": "INFERENCE_SERVICE_NAME", "value": isvc_name})
        env.append({"name": "POD_NAMESPACE", "value": namespace})
    return env


def _predictor_container(
    predictor: Mapping[str, Any], meta: Mapping[str, Any], runtimes: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The predictor's container and the labels KServe's runtime defaults add (`modelClass`,
    `serviceEnvelope`), which its Knative Service carries as the InferenceService's own."""
    model = predictor_model(predictor)
    if model is None:
        return _first_container(predictor, "spec.predictor"), {}
    # KServe's defaults and placeholders work on the InferenceService's metadata (a copy here)
    defaulted: dict[str, Any] = copy.deepcopy(dict(meta))
    defaulted.setdefault("namespace", "default")
    labels_before = dict(defaulted.get("labels") or {})
    default_before_selection(defaulted, model)
    try:
        runtime = select_runtime(model, runtimes)
    except RuntimeNotFound as exc:
        raise InvalidInferenceService(f"spec.predictor.model: {exc}", exc.reason) from None
    problem = storage_uri_error(model["storageUri"]) if model.get("storageUri") else None
    if problem:
        raise InvalidInferenceService(f"spec.predictor.model.storageUri: {problem}")
    default_after_selection(defaulted, model, runtime)
    containers = runtime.spec.get("containers") or []
    if not containers:
        raise InvalidInferenceService(
            f"no container configuration found in selected serving runtime {runtime.name!r}"
        )
    base = next((c for c in containers if c.get("name") == SERVER_CONTAINER), containers[0])
    container = copy.deepcopy(dict(base))
    container["name"] = SERVER_CONTAINER
    # The model's own container fields override the runtime's, its args follow the runtime's
    # and its env merges by name, as KServe merges them.
    for field in ("image", "command", "workingDir", "resources", "ports", "readinessProbe"):
        if model.get(field):
            container[field] = copy.deepcopy(model[field])
    if model.get("protocolVersion") == GRPC_V2 and not container.get("ports"):
        # KServe's grpc-v2 predictors declare the gRPC port as Knative needs it to carry HTTP/2
        # (KServe's docs have users write it); the plane serves gRPC on the declared port.
        container["ports"] = [copy.deepcopy(GRPC_V2_PORT)]
        probe = container.get("readinessProbe") or {}
        if "httpGet" in probe:
            # Knative probes only the serving port, which now speaks HTTP/2 alone: a connect to
            # it (knserve's runtimes listen for gRPC once their model is loaded)
            probe = {k: v for k, v in probe.items() if k != "httpGet"}
            container["readinessProbe"] = {
                **probe,
                "tcpSocket": {"port": GRPC_V2_PORT["containerPort"]},
            }
    container["args"] = [*(container.get("args") or []), *(model.get("args") or [])]
    container["env"] = _merge_env(container.get("env") or [], model.get("env") or [])
    try:
        container = replace_placeholders(container, defaulted, runtime.name)
    except PlaceholderError as exc:
        raise InvalidInferenceService(str(exc)) from None
    added = {k: v for k, v in (defaulted.get("labels") or {}).items() if labels_before.get(k) != v}
    return container, added


def _storage_uri(
    comp: Mapping[str, Any], component: str, container: Mapping[str, Any]
) -> str | None:
    """KServe's `GetStorageUri`: a predictor model's `storageUri`; for custom containers (any
    component) the main container's `STORAGE_URI` env, which KServe's webhook points at
    /mnt/models."""
    model = predictor_model(comp) if component == "predictor" else None
    if model is not None:
        return model.get("storageUri") or None
    uri = next(
        (e.get("value") for e in container.get("env") or [] if e.get("name") == STORAGE_URI_ENV),
        None,
    )
    problem = storage_uri_error(uri) if uri else None
    if problem:
        raise InvalidInferenceService(
            f"spec.{component}.containers env {STORAGE_URI_ENV}: {problem}"
        )
    return uri or None


def _chained_container(
    comp: Mapping[str, Any], path: str, isvc_name: str, predictor_host: str, target: Target
) -> dict[str, Any]:
    if path == "spec.explainer" and comp.get("art"):
        raise InvalidInferenceService(
            "spec.explainer.art is not supported by knserve; give spec.explainer.containers "
            "(for example a function made with `knserve func create -t explainer`)"
        )
    if path == "spec.explainer" and comp.get("alibi"):
        # KServe dropped its alibi explainer server; the function template takes its place.
        raise InvalidInferenceService(
            "spec.explainer.alibi is not supported by knserve; give spec.explainer.containers "
            "(for AnchorTabular, a function made with `knserve func create -t anchors-explainer`)"
        )
    container = _first_container(comp, path)
    args = list(container.get("args") or [])
    # KServe appends these unless the user already set them.
    for flag, value in (
        ("--model_name", isvc_name),
        ("--predictor_host", predictor_host),
        ("--http_port", target.http_port),
    ):
        if not any(a == flag or a.startswith(flag + "=") for a in args):
            args += [flag, value]
    container["args"] = args
    container["env"] = _merge_env(
        container.get("env") or [], [{"name": "PREDICTOR_HOST", "value": predictor_host}]
    )
    return container


def _first_container(comp: Mapping[str, Any], path: str) -> dict[str, Any]:
    containers = comp.get("containers") or []
    if not containers:
        raise InvalidInferenceService(f"{path}.containers must hold at least one container")
    main = next((c for c in containers if c.get("name") == SERVER_CONTAINER), containers[0])
    container = copy.deepcopy(dict(main))
    container.setdefault("name", SERVER_CONTAINER)
    return container


def _merge_env(
    base: Sequence[Mapping[str, Any]], extra: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Environment lists merged by name, later entries winning (as a Pod's env does)."""
    merged: dict[str, dict[str, Any]] = {}
    for entry in [*base, *extra]:
        merged[entry["name"]] = dict(entry)
    return list(merged.values())
