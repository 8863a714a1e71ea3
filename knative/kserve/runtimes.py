"""Serving runtimes: which container serves a model format.

KServe resolves `predictor.model.modelFormat` to a ServingRuntime (or ClusterServingRuntime): the
named one, or else the first runtime with `autoSelect: true` that lists the format, highest
`priority` first. knserve does the same over a table of ClusterServingRuntime-shaped objects:
the built-in ones below, which all run `knserve.runtime`, followed by any a user adds (their own
ServingRuntime objects win over the built-ins of the same name).

Runtime container args may use KServe's Go-template placeholders `{{.Name}}` and
`{{.Namespace}}`, rendered against the InferenceService's metadata.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

RUNTIME_IMAGE = "knserve/runtime:latest"

# The formats knserve.runtime serves, with the names KServe's model formats use. "custom" covers
# a model.py with a Model class; KServe has no such format, so it is never auto-selected.
_BUILTIN_FORMATS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # runtime name, --model_format value, modelFormat names it accepts
    ("kserve-sklearnserver", "sklearn", ("sklearn",)),
    ("kserve-xgbserver", "xgboost", ("xgboost",)),
    ("kserve-lgbserver", "lightgbm", ("lightgbm",)),
    ("kserve-torchserve", "pytorch", ("pytorch",)),
    ("knserve-onnxruntime", "onnx", ("onnx",)),
    ("knserve-custom", "custom", ("custom",)),
)


def builtin_runtimes() -> list[dict[str, Any]]:
    """The ClusterServingRuntimes knserve ships, one per model format of knserve.runtime."""
    runtimes = []
    for name, model_format, accepted in _BUILTIN_FORMATS:
        runtimes.append(
            {
                "apiVersion": "serving.kserve.io/v1alpha1",
                "kind": "ClusterServingRuntime",
                "metadata": {"name": name},
                "spec": {
                    "supportedModelFormats": [
                        {"name": fmt, "autoSelect": model_format != "custom", "priority": 1}
                        for fmt in accepted
                    ],
                    "protocolVersions": ["v1", "v2"],
                    "containers": [
                        {
                            "name": "kserve-container",
                            "image": RUNTIME_IMAGE,
                            "args": [
                                "--model_name={{.Name}}",
                                "--model_dir=/mnt/models",
                                f"--model_format={model_format}",
                            ],
                            # traffic only once the model is loaded, not when the port opens
                            "readinessProbe": {"httpGet": {"path": "/v2/health/ready"}},
                        }
                    ],
                },
            }
        )
    return runtimes


class RuntimeNotFound(ValueError):
    """No serving runtime serves the requested model format (or the named runtime is unknown).

    `reason` is KServe's FailureReason: NoSupportingRuntime, RuntimeNotRecognized (no runtime
    of that name) or RuntimeDisabled.
    """

    def __init__(self, message: str, reason: str = "NoSupportingRuntime") -> None:
        super().__init__(message)
        self.reason = reason


def select_runtime(
    model_format: str,
    runtime_name: str | None,
    runtimes: Sequence[Mapping[str, Any]],
) -> Mapping[str, Any]:
    """Pick the runtime for a model format as KServe does: the named one, else the best auto-select."""
    if runtime_name:
        for runtime in runtimes:
            if runtime["metadata"]["name"] == runtime_name:
                if runtime.get("spec", {}).get("disabled"):
                    raise RuntimeNotFound(
                        f"runtime {runtime_name!r} is disabled", "RuntimeDisabled"
                    )
                if not _supports(runtime, model_format):
                    formats = ", ".join(sorted(_formats(runtime))) or "none"
                    raise RuntimeNotFound(
                        f"runtime {runtime_name!r} does not support model format {model_format!r}; "
                        f"it supports: {formats}"
                    )
                return runtime
        names = ", ".join(sorted(r["metadata"]["name"] for r in runtimes))
        raise RuntimeNotFound(
            f"no serving runtime named {runtime_name!r}; available: {names}", "RuntimeNotRecognized"
        )
    candidates = [
        (entry.get("priority", 0), index, runtime)
        for index, runtime in enumerate(runtimes)
        if not runtime.get("spec", {}).get("disabled")
        for entry in runtime.get("spec", {}).get("supportedModelFormats", [])
        if entry.get("name") == model_format and entry.get("autoSelect")
    ]
    if not candidates:
        known = sorted({fmt for r in runtimes for fmt in _formats(r)})
        raise RuntimeNotFound(
            f"no serving runtime auto-selects model format {model_format!r}; "
            f"formats served: {', '.join(known)} (or name a runtime with spec.predictor.model.runtime)"
        )
    # Highest priority wins; among equals, the earliest in the table (user runtimes come first).
    candidates.sort(key=lambda c: (-c[0], c[1]))
    return candidates[0][2]


def merge_runtimes(
    user: Iterable[Mapping[str, Any]], builtin: Iterable[Mapping[str, Any]] | None = None
) -> list[Mapping[str, Any]]:
    """User runtimes first (they win ties and replace built-ins of the same name), then built-ins."""
    user = list(user)
    names = {r["metadata"]["name"] for r in user}
    rest = [r for r in (builtin if builtin is not None else builtin_runtimes())]
    return user + [r for r in rest if r["metadata"]["name"] not in names]


_PLACEHOLDER = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def render_placeholders(value: str, metadata: Mapping[str, Any]) -> str:
    """Render KServe's `{{.Name}}`-style placeholders against an object's metadata."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        field = key[:1].lower() + key[1:]
        found = metadata.get(field)
        return str(found) if found is not None else match.group(0)

    return _PLACEHOLDER.sub(replace, value)


def _formats(runtime: Mapping[str, Any]) -> set[str]:
    return {e["name"] for e in runtime.get("spec", {}).get("supportedModelFormats", [])}


def _supports(runtime: Mapping[str, Any], model_format: str) -> bool:
    return model_format in _formats(runtime)
