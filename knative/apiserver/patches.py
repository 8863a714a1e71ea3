"""JSON patches (RFC 6902, `kubectl patch --type=json`) on stored objects.

The operations run on a copy of the object as stored; the result is then written as an update,
so the usual checks (schema, resourceVersion, generation) apply to it.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer

from knserve.knative.apiserver.errors import BadRequest, Invalid


def json_patched(current: dict[str, Any], operations: Any) -> dict[str, Any]:
    """`current` with the JSON patch `operations` applied (the stored object is not changed)."""
    if not isinstance(operations, list):
        raise BadRequest(
            'a JSON patch is a list of operations, e.g. [{"op": "replace", "path": "/spec/x", "value": 1}]'
        )
    try:
        patched = jsonpatch.JsonPatch(operations).apply(current)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise Invalid(f"the JSON patch's test failed: {exc}") from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
        raise Invalid(f"the JSON patch cannot be applied: {exc}") from None
    except (TypeError, KeyError, AttributeError) as exc:
        raise BadRequest(f"the JSON patch is malformed: {exc!r}") from None
    if not isinstance(patched, dict):
        raise BadRequest("the JSON patch must leave an object")
    return patched
