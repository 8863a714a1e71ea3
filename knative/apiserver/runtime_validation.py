"""KServe's admission rules for ServingRuntimes and ClusterServingRuntimes.

KServe's validating webhook (`pkg/webhook/admission/servingruntime`) refuses, for a runtime that
is not `disabled`:

- entries of one model format with `autoSelect: true` and different priorities
  (`different priorities assigned for the model format sklearn`);
- the same priority as another enabled runtime of the same scope (the namespace's
  ServingRuntimes, or the ClusterServingRuntimes) for an auto-selected format of the same name
  and version, when both are single- or both multi-model and share a protocol version (`same
  priority assigned for the model format sklearn`), since auto-selection could not choose.

Priorities only order auto-selection, so entries without `autoSelect: true` are never compared.
The schema (`minimum: 1`) already refuses a priority below 1. Pure functions of plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _auto(entry: Mapping[str, Any]) -> bool:
    return entry.get("autoSelect") is True


def serving_runtime_errors(obj: dict[str, Any]) -> list[str]:
    """The rules one runtime is checked against alone (`validateModelFormatPrioritySame`)."""
    spec = obj.get("spec") or {}
    if spec.get("disabled"):
        return []
    priorities: dict[str, Any] = {}
    for entry in spec.get("supportedModelFormats") or []:
        if not _auto(entry):
            continue
        name = entry.get("name")
        if name not in priorities:
            priorities[name] = entry.get("priority")
            continue
        first, this = priorities[name], entry.get("priority")
        if first is not None and this is not None and first != this:
            return [
                f"spec.supportedModelFormats: different priorities assigned for the model format "
                f"{name} under the {obj.get('kind', 'ServingRuntime').lower()} "
                f"{(obj.get('metadata') or {}).get('name')}: give its entries one priority"
            ]
    return []


def _same_format(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return str(a.get("name", "")).lower() == str(b.get("name", "")).lower() and (
        a.get("version") == b.get("version")
    )


def runtime_priority_errors(
    obj: Mapping[str, Any], existing: Iterable[Mapping[str, Any]]
) -> list[str]:
    """`validateServingRuntimePriority` against the other runtimes of the same scope."""
    spec = obj.get("spec") or {}
    if spec.get("disabled"):
        return []
    name = (obj.get("metadata") or {}).get("name")
    plural = (
        "clusterservingruntimes"
        if obj.get("kind") == "ClusterServingRuntime"
        else "servingruntimes"
    )
    for other in existing:
        other_spec = other.get("spec") or {}
        other_name = (other.get("metadata") or {}).get("name")
        if (
            other_name == name
            or other_spec.get("disabled")
            or bool(other_spec.get("multiModel")) != bool(spec.get("multiModel"))
        ):
            continue
        protocols = set(spec.get("protocolVersions") or [])
        if not protocols & set(other_spec.get("protocolVersions") or []):
            continue
        for theirs in other_spec.get("supportedModelFormats") or []:
            for ours in spec.get("supportedModelFormats") or []:
                if (
                    _auto(theirs)
                    and _auto(ours)
                    and _same_format(theirs, ours)
                    and theirs.get("priority") is not None
                    and theirs.get("priority") == ours.get("priority")
                ):
                    return [
                        f"same priority assigned for the model format {ours.get('name')} in the "
                        f"{plural} {other_name} and {name}: give one of them another "
                        "spec.supportedModelFormats[].priority"
                    ]
    return []
