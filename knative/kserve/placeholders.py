"""KServe's placeholders in a serving runtime's containers (`ReplacePlaceholders`).

KServe renders the whole container (command, args, env values, image, …) as a Go template
against the InferenceService's ObjectMeta. Runtimes use field references: `{{.Name}}`,
`{{.Namespace}}`, `{{.Labels.modelClass}}`, `{{.Annotations.modelFormat}}`. A label or annotation
that is not set renders as Go's `<no value>`, as it does on a cluster. Anything else between
`{{` and `}}` is a template this renderer does not evaluate, refused with KServe's message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# ObjectMeta's scalar fields, by their Go names.
_FIELDS = {
    "Name": "name",
    "GenerateName": "generateName",
    "Namespace": "namespace",
    "UID": "uid",
    "ResourceVersion": "resourceVersion",
    "Generation": "generation",
}
_MAPS = {"Labels": "labels", "Annotations": "annotations"}
_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_FIELD = re.compile(r"^-?\s*\.(\w+)(?:\.([\w-]+))?\s*-?$")
NO_VALUE = "<no value>"  # what Go's text/template prints for a missing map key


class PlaceholderError(ValueError):
    """A placeholder that cannot be rendered; the message names it."""


def _value(action: str, meta: Mapping[str, Any]) -> str:
    match = _FIELD.match(action.strip())
    if match is None:
        raise PlaceholderError(f"unsupported placeholder {{{{{action}}}}}")
    field, key = match.groups()
    if field in _MAPS and key is not None:
        found = (meta.get(_MAPS[field]) or {}).get(key)
        return NO_VALUE if found is None else str(found)
    if field in _FIELDS and key is None:
        found = meta.get(_FIELDS[field])
        return "" if found is None else str(found)
    known = ", ".join([*(f".{f}" for f in _FIELDS), *(f".{m}.KEY" for m in _MAPS)])
    raise PlaceholderError(f"unknown placeholder {{{{{action}}}}}; known: {known}")


def render(value: Any, meta: Mapping[str, Any]) -> Any:
    """`value` (a string, or any JSON-shaped container field) with every placeholder rendered."""
    if isinstance(value, str):
        return _ACTION.sub(lambda m: _value(m.group(1), meta), value)
    if isinstance(value, list):
        return [render(v, meta) for v in value]
    if isinstance(value, dict):
        return {k: render(v, meta) for k, v in value.items()}
    return value


def replace_placeholders(
    container: Mapping[str, Any], meta: Mapping[str, Any], runtime: str
) -> dict[str, Any]:
    """The container with KServe's placeholders rendered against `meta`; PlaceholderError with
    KServe's message (`failed to replace placeholders in serving runtime …`) otherwise."""
    try:
        rendered: dict[str, Any] = render(dict(container), meta)
    except PlaceholderError as exc:
        raise PlaceholderError(
            f"failed to replace placeholders in serving runtime {runtime} Container "
            f"{container.get('name')}: {exc}"
        ) from None
    return rendered
