"""Serving runtimes: which ServingRuntime or ClusterServingRuntime serves a predictor's model.

The built-in runtimes are ClusterServingRuntimes: KServe's own stock ones, kept as the YAML KServe
installs (`stock_runtimes/*.yaml`, kustomize's image substitutions applied), and knserve's own
(`knserve-onnxruntime`, `knserve-pytorch`, `knserve-custom`), which run `knserve.runtime`. A
ClusterServingRuntime a user applies replaces the built-in of its name, as `kubectl apply` of the
same name would on a cluster.

Selection follows KServe's predictor reconciler (`GetSupportingRuntimes`, `RuntimeSupportsModel`,
`sortSupportedRuntimeByPriority`):

- a runtime named by `model.runtime` is the namespace's ServingRuntime of that name, else the
  ClusterServingRuntime; it must not be `disabled`, must speak the model's `protocolVersion` when
  one is given, and must list the model's format (autoSelect or not);
- otherwise the candidates are the runtimes that are not disabled, not `multiModel` (ModelMesh's),
  not multi-node (`workerSpec`), speak the model's protocol (default v1; a runtime without
  `protocolVersions` speaks all) and list the format with `autoSelect: true` — by name alone when
  the model gives no version, by the exact `name:version` otherwise. So `priority` only counts
  where `autoSelect` is on;
- the namespace's ServingRuntimes come before every ClusterServingRuntime; within each, runtimes
  are ordered by their lowest protocol (v1 < v2 < grpc-v1 < grpc-v2 < none), then newest first,
  then by name, and then (stably) by the priority of the first entry naming the format, highest
  first, runtimes without a priority last.

Failures carry KServe's FailureReason: RuntimeNotRecognized, RuntimeDisabled, NoSupportingRuntime.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from knserve.knative.apiserver.release_images import RUNTIME, release

SERVING_RUNTIME = "ServingRuntime"
CLUSTER_SERVING_RUNTIME = "ClusterServingRuntime"
STOCK_DIR = Path(__file__).parent / "stock_runtimes"
# KServe's ProtocolVersion enum order, which sorts runtimes by the lowest protocol they speak.
_PROTOCOL_ORDER = {"v1": 1, "v2": 2, "grpc-v1": 3, "grpc-v2": 4}
_UNKNOWN_PROTOCOL = 5
DEFAULT_PROTOCOL = "v1"

# knserve's own runtimes: name, --model_format, format entries (name, version, autoSelect, priority).
# ONNX outranks Triton's onnx entry (priority 1) because Triton cannot run without its container;
# PyTorch stays below TorchServe's (priority 2), as KServe selects, and serves TorchScript and
# torch.export archives when named or when TorchServe is disabled.
_KNSERVE_RUNTIMES: tuple[
    tuple[str, str, tuple[tuple[str, str | None, bool, int | None], ...]], ...
] = (
    ("knserve-onnxruntime", "onnx", (("onnx", None, True, 2), ("onnx", "1", True, 2))),
    ("knserve-pytorch", "pytorch", (("pytorch", None, True, 1), ("pytorch", "1", True, 1))),
    # KServe has no such format: a model.py with a Model class, served only when named.
    ("knserve-custom", "custom", (("custom", None, False, None),)),
)


@functools.cache
def _stock() -> tuple[dict[str, Any], ...]:
    return tuple(yaml.safe_load(path.read_text()) for path in sorted(STOCK_DIR.glob("*.yaml")))


def stock_runtimes() -> list[dict[str, Any]]:
    """KServe's stock ClusterServingRuntimes, as KServe's release installs them."""
    return copy.deepcopy(list(_stock()))


def knserve_runtimes(image: str | None = None) -> list[dict[str, Any]]:
    """knserve's own ClusterServingRuntimes, one per format of knserve.runtime KServe lacks, on
    `image` (default: the release's runtime image, `knserve/runtime:{version}`)."""
    image = image or release().image(RUNTIME)
    runtimes = []
    for name, model_format, entries in _KNSERVE_RUNTIMES:
        formats = []
        for fmt, version, auto, priority in entries:
            entry: dict[str, Any] = {"name": fmt}
            if version is not None:
                entry["version"] = version
            entry["autoSelect"] = auto
            if priority is not None:
                entry["priority"] = priority
            formats.append(entry)
        container = {
            "name": "kserve-container",
            "image": image,
            "args": [
                "--model_name={{.Name}}",
                "--model_dir=/mnt/models",
                f"--model_format={model_format}",
            ],
            # traffic only once the model is loaded, not when the port opens; 8080 is the
            # container's port (Knative's default), which the plane maps to the replica's
            "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8080}},
        }
        runtimes.append(
            {
                "apiVersion": "serving.kserve.io/v1alpha1",
                "kind": CLUSTER_SERVING_RUNTIME,
                "metadata": {"name": name},
                "spec": {
                    "supportedModelFormats": formats,
                    # knserve.runtime serves gRPC too (on the h2c port a grpc-v2 predictor declares)
                    "protocolVersions": ["v1", "v2", "grpc-v2"],
                    "containers": [container],
                },
            }
        )
    return runtimes


def builtin_runtimes(image: str | None = None) -> list[dict[str, Any]]:
    """Every built-in ClusterServingRuntime: KServe's stock ones, then knserve's own (on `image`)."""
    return stock_runtimes() + knserve_runtimes(image)


def merge_runtimes(
    user: Iterable[Mapping[str, Any]], builtin: Iterable[Mapping[str, Any]] | None = None
) -> list[Mapping[str, Any]]:
    """The user's ServingRuntimes and ClusterServingRuntimes, then the built-ins no user
    ClusterServingRuntime replaces by name."""
    user = list(user)
    names = {r["metadata"]["name"] for r in user if r.get("kind") != SERVING_RUNTIME}
    rest = builtin if builtin is not None else builtin_runtimes()
    return user + [r for r in rest if r["metadata"]["name"] not in names]


@dataclass(frozen=True)
class SupportedRuntime:
    """A runtime that may serve the model (KServe's `v1alpha1.SupportedRuntime`)."""

    name: str
    spec: Mapping[str, Any]
    cluster: bool  # a ClusterServingRuntime (else the namespace's ServingRuntime)
    annotations: Mapping[str, str]


class RuntimeNotFound(ValueError):
    """No serving runtime serves the model (or the named one cannot).

    `reason` is KServe's FailureReason: NoSupportingRuntime, RuntimeNotRecognized (no runtime
    of that name) or RuntimeDisabled.
    """

    def __init__(self, message: str, reason: str = "NoSupportingRuntime") -> None:
        super().__init__(message)
        self.reason = reason


def model_protocol(model: Mapping[str, Any]) -> str:
    """The predictor's protocol (`ModelSpec.GetProtocol`): its protocolVersion, else v1."""
    return str(model.get("protocolVersion") or DEFAULT_PROTOCOL)


def protocol_priority(protocols: Sequence[str] | None) -> int:
    """KServe's `GetProtocolVersionPriority`: the lowest protocol a runtime speaks."""
    if not protocols:
        return _UNKNOWN_PROTOCOL
    return min(_PROTOCOL_ORDER.get(p, _UNKNOWN_PROTOCOL) for p in protocols)


def lowest_protocol(protocols: Sequence[str] | None) -> str:
    """The protocol KServe gives a predictor without one: its runtime's lowest ("" if unknown)."""
    wanted = protocol_priority(protocols)
    return next((p for p, n in _PROTOCOL_ORDER.items() if n == wanted), "")


def speaks(spec: Mapping[str, Any], protocol: str | None) -> bool:
    """`IsProtocolVersionSupported`: a runtime without protocolVersions speaks every protocol."""
    protocols = spec.get("protocolVersions") or []
    return not protocol or not protocols or protocol in protocols


def supports_model(model: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    """`RuntimeSupportsModel`: the runtime lists the model's format (and version, if the model
    gives one); only autoSelect entries count unless the model names its runtime."""
    named = bool(model.get("runtime"))
    labels: set[tuple[Any, str | None]] = set()
    for entry in spec.get("supportedModelFormats") or []:
        if named or entry.get("autoSelect") is True:
            labels.add((entry.get("name"), None))
            if entry.get("version") is not None:
                labels.add((entry.get("name"), str(entry["version"])))
    model_format = model.get("modelFormat") or {}
    version = model_format.get("version")
    return (model_format.get("name"), None if version is None else str(version)) in labels


def format_priority(spec: Mapping[str, Any], format_name: str) -> int | None:
    """`GetPriority`: the priority of the first entry naming the format (None if unset)."""
    for entry in spec.get("supportedModelFormats") or []:
        if entry.get("name") == format_name:
            priority = entry.get("priority")
            return None if priority is None else int(priority)
    return None


def _listed_order(runtimes: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    # protocol ascending, then creationTimestamp descending (built-ins have none: oldest), then name
    ordered = sorted(runtimes, key=lambda r: r["metadata"]["name"])
    ordered.sort(key=lambda r: r["metadata"].get("creationTimestamp") or "", reverse=True)
    ordered.sort(key=lambda r: protocol_priority((r.get("spec") or {}).get("protocolVersions")))
    return ordered


def _by_priority(runtimes: list[SupportedRuntime], format_name: str) -> list[SupportedRuntime]:
    # stable: runtimes without a priority keep their listed order, after those with one
    def key(runtime: SupportedRuntime) -> tuple[int, int]:
        priority = format_priority(runtime.spec, format_name)
        return (1, 0) if priority is None else (0, -priority)

    return sorted(runtimes, key=key)


def _split(
    runtimes: Iterable[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    namespaced: list[Mapping[str, Any]] = []
    cluster: list[Mapping[str, Any]] = []
    for runtime in runtimes:
        (namespaced if runtime.get("kind") == SERVING_RUNTIME else cluster).append(runtime)
    return namespaced, cluster


def _supported(runtime: Mapping[str, Any], cluster: bool) -> SupportedRuntime:
    meta = runtime["metadata"]
    return SupportedRuntime(
        meta["name"], runtime.get("spec") or {}, cluster, dict(meta.get("annotations") or {})
    )


def supporting_runtimes(
    model: Mapping[str, Any], runtimes: Iterable[Mapping[str, Any]]
) -> list[SupportedRuntime]:
    """`GetSupportingRuntimes` for single-model, single-node serving: every runtime that may
    auto-select the model, best first. `runtimes` are the namespace's ServingRuntimes and the
    ClusterServingRuntimes (told apart by `kind`)."""
    protocol = model_protocol(model)
    format_name = (model.get("modelFormat") or {}).get("name", "")
    result: list[SupportedRuntime] = []
    for group, cluster in zip(_split(runtimes), (False, True), strict=True):
        found = [
            _supported(r, cluster)
            for r in _listed_order(group)
            if not (r.get("spec") or {}).get("disabled")
            and not (r.get("spec") or {}).get("multiModel")
            and not (r.get("spec") or {}).get("workerSpec")
            and supports_model(model, r.get("spec") or {})
            and speaks(r.get("spec") or {}, protocol)
        ]
        result += _by_priority(found, format_name)
    return result


def select_runtime(
    model: Mapping[str, Any], runtimes: Iterable[Mapping[str, Any]]
) -> SupportedRuntime:
    """The runtime KServe's predictor reconciler picks for `model` (`predictor.model`)."""
    runtimes = list(runtimes)
    model_format = model.get("modelFormat") or {}
    described = _describe(model_format)
    name = model.get("runtime")
    if name:
        namespaced, cluster = _split(runtimes)
        found = next(
            (_supported(r, False) for r in namespaced if r["metadata"]["name"] == name), None
        )
        found = found or next(
            (_supported(r, True) for r in cluster if r["metadata"]["name"] == name), None
        )
        if found is None:
            names = ", ".join(sorted({r["metadata"]["name"] for r in runtimes})) or "none"
            raise RuntimeNotFound(
                f"no ServingRuntime or ClusterServingRuntime named {name!r}; available: {names}",
                "RuntimeNotRecognized",
            )
        if found.spec.get("disabled"):
            raise RuntimeNotFound(
                f"the specified runtime {name!r} is disabled; enable it (spec.disabled: false) or "
                "name another",
                "RuntimeDisabled",
            )
        protocol = model.get("protocolVersion")
        if protocol and not speaks(found.spec, protocol):
            raise RuntimeNotFound(
                f"the specified runtime {name!r} does not support protocol version {protocol!r}; "
                f"it speaks: {', '.join(found.spec.get('protocolVersions') or [])}"
            )
        if not supports_model(model, found.spec):
            raise RuntimeNotFound(
                f"the specified runtime {name!r} does not support model format {described}; "
                f"it supports: {_listed_formats(found.spec)}"
            )
        return found
    candidates = supporting_runtimes(model, runtimes)
    if not candidates:
        raise RuntimeNotFound(
            f"no runtime found to support model format {described} with protocol "
            f"{model_protocol(model)}: no runtime that is enabled, speaks that protocol and lists "
            f"the format with autoSelect: true (formats auto-selected: "
            f"{_auto_formats(runtimes)}); name one with spec.predictor.model.runtime"
        )
    return candidates[0]


def _describe(model_format: Mapping[str, Any]) -> str:
    name = model_format.get("name")
    version = model_format.get("version")
    return repr(name) + (f" version {str(version)!r}" if version is not None else "")


def _listed_formats(spec: Mapping[str, Any]) -> str:
    entries = spec.get("supportedModelFormats") or []
    return (
        ", ".join(
            e.get("name", "?") + (f":{e['version']}" if e.get("version") is not None else "")
            for e in entries
        )
        or "none"
    )


def _auto_formats(runtimes: Iterable[Mapping[str, Any]]) -> str:
    found = {
        e.get("name")
        for r in runtimes
        if not (r.get("spec") or {}).get("disabled")
        for e in (r.get("spec") or {}).get("supportedModelFormats") or []
        if e.get("autoSelect") is True
    }
    return ", ".join(sorted(str(f) for f in found)) or "none"
