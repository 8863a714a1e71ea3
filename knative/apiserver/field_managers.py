"""Server-side apply: which field manager owns which fields (`metadata.managedFields`).

An apply (`kubectl apply --server-side`, a PATCH of `application/apply-patch+yaml`) names a field
manager and the fields it wants set. Fields that another manager owns and that the apply would
change are conflicts: a 409 with Kubernetes' message, unless `force=true` moves them to the
applier. Fields the applier set before and leaves out now are removed (when nobody else owns
them). An update with a `fieldManager` (client-side apply, `kubectl patch`) owns the fields it
changed. Fields are leaf paths; lists are atomic, as a CRD's lists without `x-kubernetes-list-type`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from knserve.knative.apiserver.errors import Conflict
from knserve.knative.apiserver.store import now

Path = tuple[str, ...]
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# what the server sets, never owned by a manager
_SERVER_META = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
}


def leaf_paths(obj: Any, prefix: Path = ()) -> set[Path]:
    """Every field path an object sets (a map is followed into, anything else is one field)."""
    if not isinstance(obj, dict) or (not obj and prefix):
        return {prefix}
    found: set[Path] = set()
    for key, value in obj.items():
        if not prefix and key in ("apiVersion", "kind", "status"):
            continue
        if prefix == ("metadata",) and key in _SERVER_META:
            continue
        found |= leaf_paths(value, (*prefix, key))
    return found


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    """Paths as Kubernetes' FieldsV1 (`{"f:spec": {"f:x": {}}}`)."""
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return tree


def from_fields_v1(tree: Any, prefix: Path = ()) -> set[Path]:
    if not isinstance(tree, dict) or not tree:
        return {prefix} if prefix else set()
    found: set[Path] = set()
    for key, sub in tree.items():
        if key.startswith("f:"):
            found |= from_fields_v1(sub, (*prefix, key[2:]))
    return found


def _get(obj: Any, path: Path) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return False, None
        obj = obj[key]
    return True, obj


def _owns(owned: set[Path], path: Path) -> bool:
    return any(path[:n] in owned for n in range(1, len(path) + 1))


def _entries(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    return copy.deepcopy(((obj or {}).get("metadata") or {}).get("managedFields") or [])


def _entry(manager: str, operation: str, api_version: str, paths: set[Path]) -> dict[str, Any]:
    return {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(paths),
    }


def _rebuild(
    entries: list[dict[str, Any]], mine: dict[str, Any], taken: set[Path]
) -> list[dict[str, Any]]:
    """Other managers' entries without the `taken` fields (emptied ones dropped), then `mine`."""
    out = []
    for entry in entries:
        if (entry["manager"], entry.get("operation")) == (mine["manager"], mine["operation"]):
            continue
        left = {p for p in from_fields_v1(entry.get("fieldsV1")) if not _owns(taken, p)}
        if left:
            out.append({**entry, "fieldsV1": to_fields_v1(left)})
    return [*out, mine]


def _describe(path: Path) -> str:
    return "".join(f".{key}" for key in path)


def _conflict_message(found: dict[str, list[Path]], api_version: str) -> str:
    total = sum(len(paths) for paths in found.values())
    parts = []
    for manager, paths in found.items():
        if len(paths) == 1:
            parts.append(f'conflict with "{manager}" using {api_version}: {_describe(paths[0])}')
        else:
            listed = "\n".join(f"- {_describe(p)}" for p in sorted(paths))
            parts.append(f'conflicts with "{manager}" using {api_version}:\n{listed}')
    noun = "conflict" if total == 1 else "conflicts"
    return f"Apply failed with {total} {noun}: " + "\n".join(parts)


def apply(
    current: dict[str, Any] | None,
    applied: dict[str, Any],
    manager: str,
    api_version: str,
    force: bool,
) -> dict[str, Any]:
    """The object after `manager` applies `applied` to `current` (None: it is created), with its
    managedFields; Conflict when other managers own fields it would change and not `force`."""
    wanted = leaf_paths(applied)
    entries = _entries(current)
    base = copy.deepcopy(current) if current is not None else {"metadata": {}}
    conflicts: dict[str, list[Path]] = {}
    for entry in entries:
        if entry["manager"] == manager and entry.get("operation") == "Apply":
            continue
        theirs = from_fields_v1(entry.get("fieldsV1"))
        for path in sorted(wanted):
            if _owns(theirs, path) and _get(base, path) != _get(applied, path):
                conflicts.setdefault(entry["manager"], []).append(path)
    if conflicts and not force and not _upgrades_client_side_apply(base, manager, conflicts):
        raise Conflict(_conflict_message(conflicts, api_version))
    taken = {p for paths in conflicts.values() for p in paths}
    before = next(
        (
            from_fields_v1(e.get("fieldsV1"))
            for e in entries
            if e["manager"] == manager and e.get("operation") == "Apply"
        ),
        set(),
    )
    others = set().union(
        *(
            from_fields_v1(e.get("fieldsV1"))
            for e in entries
            if not (e["manager"] == manager and e.get("operation") == "Apply")
        )
    )
    for path in sorted(before - wanted, key=len, reverse=True):
        if not _owns(others - taken, path):
            _remove(base, path)
    result = _merge(base, {k: v for k, v in applied.items() if k != "status"})
    meta = result.setdefault("metadata", {})
    meta["managedFields"] = _rebuild(entries, _entry(manager, "Apply", api_version, wanted), taken)
    return result


def _upgrades_client_side_apply(
    current: dict[str, Any], manager: str, conflicts: dict[str, list[Path]]
) -> bool:
    """As the API server: `kubectl apply --server-side` over an object that client-side apply
    managed takes the fields its last-applied-configuration set without conflicts (only for the
    manager `kubectl`, so another name opts out)."""
    annotation = ((current.get("metadata") or {}).get("annotations") or {}).get(LAST_APPLIED)
    if manager != "kubectl" or not annotation:
        return False
    try:
        allowed = leaf_paths(json.loads(annotation))
    except ValueError:
        return False
    return all(_owns(allowed, p) for paths in conflicts.values() for p in paths)


def record_update(
    current: dict[str, Any], updated: dict[str, Any], manager: str, api_version: str
) -> list[dict[str, Any]]:
    """managedFields after an update by `manager`: it owns the fields it changed (taken from
    any other manager) besides those it owned already."""
    old, new = leaf_paths(current), leaf_paths(updated)
    changed = {p for p in new if _get(current, p) != _get(updated, p)}
    removed = old - new
    entries = _entries(current)
    had = next(
        (
            from_fields_v1(e.get("fieldsV1"))
            for e in entries
            if e["manager"] == manager and e.get("operation") == "Update"
        ),
        set(),
    )
    mine = {p for p in had | changed if p in new or any(p[:n] in new for n in range(1, len(p)))}
    entry = _entry(manager, "Update", api_version, mine)
    rebuilt = _rebuild(entries, entry, changed | removed)
    return [e for e in rebuilt if e["fieldsV1"]]


def _remove(obj: dict[str, Any], path: Path) -> None:
    parents = [obj]
    for key in path[:-1]:
        nxt = parents[-1].get(key)
        if not isinstance(nxt, dict):
            return
        parents.append(nxt)
    parents[-1].pop(path[-1], None)
    # maps the removal emptied go too (but never the top-level spec or metadata)
    for depth in range(len(path) - 1, 1, -1):
        if not parents[depth]:
            parents[depth - 1].pop(path[depth - 1], None)


def _merge(base: Any, applied: Any) -> Any:
    if not isinstance(base, dict) or not isinstance(applied, dict):
        return copy.deepcopy(applied)
    out = dict(base)
    for key, value in applied.items():
        out[key] = _merge(base.get(key), value)
    return out
