"""`kubectl apply`'s three-way merge, as it is for custom resources (JSON merge patch).

kubectl (client-side apply) keeps what it applied last in the annotation
`kubectl.kubernetes.io/last-applied-configuration` (the object as JSON). Applying a file then
sends one JSON merge patch made of two halves (`CreateThreeWayJSONMergePatch` in
k8s.io/apimachinery's `util/jsonmergepatch/patch.go`):

- additions and changes: the merge patch from the *current* object to the file (the *modified*
  configuration), without its deletions, so fields other writers set (the server's defaults,
  `kn service update --traffic`) stay;
- deletions: the merge patch from the *last-applied* configuration to the file, with only its
  deletions, so a field or annotation removed from the file is removed from the object.

Custom resources have no strategic-merge keys, so a list is one value: changed, it is replaced
whole. An object that has no last-applied annotation (made by `create`, a controller or an older
`knserve apply`) has an empty last-applied configuration, as in kubectl: nothing is removed the
first time, and the annotation is written so that the next apply can remove.
"""

from __future__ import annotations

import copy
import json
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def with_last_applied(obj: dict[str, Any]) -> dict[str, Any]:
    """The modified configuration: `obj` annotated with its own JSON (without that annotation),
    serialised as kubectl does (sorted keys, compact, a final newline)."""
    modified = copy.deepcopy(obj)
    modified.pop("status", None)
    annotations = modified.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.pop(LAST_APPLIED, None)
    applied = copy.deepcopy(modified)
    if not applied["metadata"]["annotations"]:
        del applied["metadata"]["annotations"]
    annotations[LAST_APPLIED] = json.dumps(applied, sort_keys=True, separators=(",", ":")) + "\n"
    return modified


def last_applied(current: dict[str, Any]) -> dict[str, Any] | None:
    """What was applied last, from the object's annotation; None when it has none (or not JSON)."""
    text = ((current.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return None
    try:
        original = json.loads(text)
    except ValueError:
        return None
    return original if isinstance(original, dict) else None


def create_merge_patch(source: Any, target: Any) -> dict[str, Any]:
    """The RFC 7386 merge patch that turns the object `source` into `target` (null deletes)."""
    patch: dict[str, Any] = {}
    for key, value in target.items():
        if key not in source:
            patch[key] = value
        elif isinstance(value, dict) and isinstance(source[key], dict):
            if inner := create_merge_patch(source[key], value):
                patch[key] = inner
        elif value != source[key] or type(value) is not type(source[key]):
            patch[key] = value
    for key in source.keys() - target.keys():
        patch[key] = None
    return patch


def _keep_or_drop_nulls(patch: dict[str, Any], keep_nulls: bool) -> dict[str, Any]:
    """Only a patch's deletions (`keep_nulls`), or only its additions and changes."""
    kept: dict[str, Any] = {}
    for key, value in patch.items():
        if value is None:
            if keep_nulls:
                kept[key] = None
        elif isinstance(value, dict) and value:
            if inner := _keep_or_drop_nulls(value, keep_nulls):
                kept[key] = inner
        elif not keep_nulls:
            kept[key] = value  # a list, a scalar or an explicit {}: a value, replaced whole
    return kept


def _merge(deletions: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(deletions)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def three_way_merge_patch(
    original: dict[str, Any] | None, modified: dict[str, Any], current: dict[str, Any]
) -> dict[str, Any]:
    """kubectl's patch for a custom resource: `current`'s changes towards `modified`, plus the
    deletion of what `original` (last applied; None: nothing) had and `modified` has not.
    An empty patch means the object is as applied (`unchanged`)."""
    changes = _keep_or_drop_nulls(create_merge_patch(current, modified), keep_nulls=False)
    deletions = _keep_or_drop_nulls(create_merge_patch(original or {}, modified), keep_nulls=True)
    return _merge(deletions, changes)
