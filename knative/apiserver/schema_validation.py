"""Validation of objects against the real CRD schemas (Knative Serving, Eventing, KServe).

The CRD files under `knative/crds/` are verbatim copies of the ones the projects release. A CRD's
`openAPIV3Schema` is JSON Schema with Kubernetes' extensions; before handing it to `jsonschema`
this module makes the extensions mean what the API server makes them mean:

- `nullable: true` admits null;
- `x-kubernetes-int-or-string: true` admits an integer or a string;
- an object with `properties` and no `x-kubernetes-preserve-unknown-fields` admits no other keys,
  as the API server does with strict field validation (`kubectl apply` by default), so a typo
  such as `spec.traffic[0].percnt` is an error that names the field instead of silently pruned.

Errors carry the field path as Kubernetes writes it (`spec.traffic[0].percent`).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import ValidationError

CRD_DIR = Path(__file__).parents[1] / "crds"  # knative/crds/, where deploy/operator.yaml names them


@cache
def crd(filename: str) -> dict[str, Any]:
    with (CRD_DIR / filename).open() as fh:
        # libyaml when present: the KServe CRD is 2 MB and the pure-Python loader takes seconds
        for doc in yaml.load_all(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                return doc
    raise FileNotFoundError(f"no CustomResourceDefinition in {CRD_DIR / filename}")


def _structural(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_structural(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _structural(v) for k, v in schema.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable") and "type" in out:
        out["type"] = (
            [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        )
    if (
        out.get("type") == "object"
        and "properties" in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
        and "additionalProperties" not in out
    ):
        out["additionalProperties"] = False
    return out


@cache
def validator(filename: str, version: str) -> Draft7Validator:
    definition = crd(filename)
    for entry in definition["spec"]["versions"]:
        if entry["name"] == version:
            schema = copy.deepcopy(entry["schema"]["openAPIV3Schema"])
            # metadata is ObjectMeta, validated by the API machinery itself, not by the CRD; and
            # every object carries apiVersion and kind, which some CRDs (Eventing's) leave out
            props = schema.setdefault("properties", {})
            props["metadata"] = {"type": "object"}
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            return Draft7Validator(_structural(schema))
    raise KeyError(f"{filename} has no version {version}")


def field_path(error: ValidationError) -> str:
    out = ""
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(object)"


def schema_errors(obj: dict[str, Any], filename: str, version: str) -> list[str]:
    """Every way `obj` breaks the CRD's schema, one message each, with the field path."""
    messages = []
    for error in sorted(
        validator(filename, version).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))
    ):
        if error.validator == "additionalProperties" and error.validator_value is False:
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            known = ", ".join(sorted(error.schema.get("properties", {})))
            messages.append(
                f"{field_path(error)}: unknown field(s) {', '.join(extra)}; known fields: {known}"
            )
        else:
            messages.append(f"{field_path(error)}: {error.message}")
    return messages
