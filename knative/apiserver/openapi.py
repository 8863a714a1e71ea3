"""OpenAPI documents for the kinds the plane serves, generated from their CRD schemas.

kubectl reads OpenAPI v3 (`/openapi/v3`, then one document per group version) to validate what it
applies (a PATCH operation with the `fieldValidation` parameter tells it the server validates
strictly) and to `kubectl explain`; other clients read the single v2 (Swagger) document as JSON.
Each kind's schema is the CRD's `openAPIV3Schema` with `metadata` pointing at ObjectMeta, named
as the API server names CRD definitions (`dev.knative.serving.v1.Service`).
"""

from __future__ import annotations

import copy
import hashlib
from functools import cache
from typing import Any

import orjson

from knserve.knative.apiserver.discovery import crd_version
from knserve.knative.apiserver.kinds import KINDS, Kind

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)

_OBJECT_META: dict[str, Any] = {
    "description": "Standard object's metadata.",
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Name, unique within a namespace."},
        "generateName": {"type": "string", "description": "Prefix for a server-made name."},
        "namespace": {"type": "string", "description": "The namespace the object lives in."},
        "labels": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Keys and values that selectors match.",
        },
        "annotations": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Keys and values that tools and controllers read.",
        },
        "uid": {"type": "string", "description": "Unique in time and space; set by the server."},
        "resourceVersion": {"type": "string", "description": "Version for optimistic concurrency."},
        "generation": {"type": "integer", "format": "int64", "description": "Spec generation."},
        "creationTimestamp": {"type": "string", "format": "date-time"},
        "deletionTimestamp": {"type": "string", "format": "date-time"},
        "finalizers": {"type": "array", "items": {"type": "string", "default": ""}},
        "ownerReferences": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "description": "Objects this one depends on; deleting the owner deletes it.",
        },
        "managedFields": {
            "type": "array",
            "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "description": "Which field manager set which fields (server-side apply).",
        },
    },
}
_TYPE_FIELDS = {
    "apiVersion": {"type": "string", "description": "The versioned schema of this object."},
    "kind": {"type": "string", "description": "The REST resource this object represents."},
}


def definition_name(kind: Kind) -> str:
    """`serving.knative.dev` v1 Service -> `dev.knative.serving.v1.Service`."""
    return ".".join([*reversed(kind.group.split(".")), kind.version, kind.kind])


def _gvk(kind: Kind) -> dict[str, str]:
    return {"group": kind.group, "version": kind.version, "kind": kind.kind}


def _schema(kind: Kind, ref_prefix: str) -> dict[str, Any]:
    schema = copy.deepcopy(crd_version(kind)["schema"]["openAPIV3Schema"])
    props = schema.setdefault("properties", {})
    for name, field in _TYPE_FIELDS.items():
        props[name] = {**field, **props.get(name, {})}
    props["metadata"] = {"$ref": f"{ref_prefix}{META}.ObjectMeta"}
    schema.setdefault("type", "object")
    schema["x-kubernetes-group-version-kind"] = [_gvk(kind)]
    return schema


def _item_path(kind: Kind) -> str:
    scope = "/namespaces/{namespace}" if kind.namespaced else ""
    return f"/apis/{kind.group}/{kind.version}{scope}/{kind.plural}/{{name}}"


def _operations(kind: Kind, ref: str, v3: bool) -> dict[str, Any]:
    """The item path's operations; what kubectl looks at is PATCH's GVK and its parameters."""

    def param(name: str, where: str = "query") -> dict[str, Any]:
        typed = {"schema": {"type": "string"}} if v3 else {"type": "string"}
        return {
            "name": name,
            "in": where,
            **typed,
            **({"required": True} if where == "path" else {}),
        }

    ok = {
        "200": {
            "description": "OK",
            **(
                {"content": {"application/json": {"schema": {"$ref": ref}}}}
                if v3
                else {"schema": {"$ref": ref}}
            ),
        }
    }
    ops: dict[str, Any] = {}
    for verb in ("get", "put", "patch", "delete"):
        op: dict[str, Any] = {
            "operationId": f"{verb}{kind.kind}",
            "responses": ok,
            "x-kubernetes-action": verb if verb != "put" else "put",
            "x-kubernetes-group-version-kind": _gvk(kind),
        }
        if verb in ("put", "patch"):
            op["parameters"] = [param("dryRun"), param("fieldManager"), param("fieldValidation")]
            if verb == "patch":
                op["parameters"].append(param("force"))
            media = PATCH_TYPES if verb == "patch" else ("application/json",)
            if v3:
                op["requestBody"] = {"content": {m: {"schema": {"$ref": ref}} for m in media}}
            else:
                op["consumes"] = list(media)
                op["parameters"].append(
                    {"name": "body", "in": "body", "required": True, "schema": {"$ref": ref}}
                )
        ops[verb] = op
    params = [param("name", "path"), *([param("namespace", "path")] if kind.namespaced else [])]
    return {**ops, "parameters": params}


@cache
def v3_document(group: str, version: str) -> bytes:
    """The OpenAPI v3 document of one group version (empty paths when it serves no kind)."""
    prefix = "#/components/schemas/"
    schemas: dict[str, Any] = {f"{META}.ObjectMeta": _OBJECT_META}
    paths: dict[str, Any] = {}
    for kind in KINDS.values():
        if (kind.group, kind.version) == (group, version):
            name = definition_name(kind)
            schemas[name] = _schema(kind, prefix)
            paths[_item_path(kind)] = _operations(kind, prefix + name, v3=True)
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "knserve control API", "version": f"{group}/{version}"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
    return orjson.dumps(doc)


def v3_root() -> dict[str, Any]:
    """`/openapi/v3`: where each group version's document is, with a hash of its content (the
    client caches by it)."""
    paths = {}
    for group, version in sorted({(k.group, k.version) for k in KINDS.values()}):
        digest = hashlib.sha256(v3_document(group, version)).hexdigest()[:32].upper()
        paths[f"apis/{group}/{version}"] = {
            "serverRelativeURL": f"/openapi/v3/apis/{group}/{version}?hash={digest}"
        }
    return {"paths": paths}


@cache
def v2_document() -> bytes:
    """The OpenAPI v2 (Swagger) document of every kind the plane serves."""
    prefix = "#/definitions/"
    definitions: dict[str, Any] = {f"{META}.ObjectMeta": _OBJECT_META}
    paths: dict[str, Any] = {}
    for kind in KINDS.values():
        name = definition_name(kind)
        definitions[name] = _v2_schema(_schema(kind, prefix))
        paths[_item_path(kind)] = _operations(kind, prefix + name, v3=False)
    doc = {
        "swagger": "2.0",
        "info": {"title": "knserve control API", "version": "v1"},
        "paths": paths,
        "definitions": definitions,
    }
    return orjson.dumps(doc)


def _v2_schema(schema: Any) -> Any:
    """OpenAPI v3 schema keywords Swagger 2.0 lacks, dropped as the API server drops them."""
    if isinstance(schema, list):
        return [_v2_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    dropped = ("nullable", "anyOf", "oneOf", "not")
    return {k: _v2_schema(v) for k, v in schema.items() if k not in dropped}
