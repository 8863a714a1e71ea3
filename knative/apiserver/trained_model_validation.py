"""KServe's TrainedModel webhook rules, on top of the CRD schema.

KServe's validator (`trainedmodel_webhook.go`) refuses a name that is not `[a-zA-Z0-9_-]+` and a
storageUri of an unsupported scheme; knserve also refuses a `memory` that is no Kubernetes
quantity (the schema's pattern lets `1e` through) and names the field each time.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from knserve.knative.apiserver.isvc_validation import storage_uri_error

__all__ = ["parse_quantity", "trained_model_errors"]

TM_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
_QUANTITY = re.compile(
    r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$"
)
_SUFFIX: dict[str | None, Decimal] = {
    None: Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    **{s: Decimal(10) ** (3 * (i + 1)) for i, s in enumerate("kMGTPE")},
    **{s + "i": Decimal(2) ** (10 * (i + 1)) for i, s in enumerate("KMGTPE")},
}


def parse_quantity(value: str | int | float) -> Decimal:
    """A Kubernetes resource quantity (`512Mi`, `1G`, `1.5Gi`, `100m`, `1e9`) as a number."""
    match = _QUANTITY.match(str(value).strip())
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (for example 256Mi, 1Gi or 500M)")
    try:
        return Decimal(match.group(1)) * _SUFFIX[match.group(2)]
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a Kubernetes quantity") from None


def trained_model_errors(obj: dict[str, Any]) -> list[str]:
    """KServe's webhook rules (module docstring); each message names its field."""
    errors = []
    name = str((obj.get("metadata") or {}).get("name") or "")
    if not TM_NAME.match(name):
        errors.append(
            f"metadata.name: the Trained Model {name!r} is invalid: a Trained Model name must "
            "consist of alphanumeric characters, '_', or '-' (e.g. 'my-Name' or 'abc_123')"
        )
    model = (obj.get("spec") or {}).get("model") or {}
    uri = str(model.get("storageUri") or "")
    problem = storage_uri_error(uri) if uri else "storageUri is empty"
    if problem:
        errors.append(f"spec.model.storageUri: {problem}")
    try:
        parse_quantity(model.get("memory", ""))
    except ValueError as exc:
        errors.append(f"spec.model.memory: {exc}")
    return errors
