"""Server-side printing: objects as a `meta.k8s.io` Table, with each CRD's printer columns.

`kubectl get` asks for `application/json;as=Table;v=v1;g=meta.k8s.io` and prints the columns
the server returns, so the columns are the CRD's `additionalPrinterColumns` (NAME first, AGE
when the CRD names none), evaluated here as the API server evaluates them: a `date` cell is an
age (`5m`), a `string` cell every value the JSONPath selects, others the first value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from knserve.knative.apiserver.discovery import crd_version
from knserve.knative.apiserver.jsonpath import find
from knserve.knative.apiserver.kinds import Kind

_NAME = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def table_version(accept: str) -> str | None:
    """The Table version (`v1`, `v1beta1`) an Accept header asks for first, or None."""
    for media_range in accept.split(","):
        params = dict(
            (p.split("=", 1)[0].strip(), p.split("=", 1)[1].strip())
            for p in media_range.split(";")[1:]
            if "=" in p
        )
        wanted = params.get("as") == "Table" and params.get("g") == "meta.k8s.io"
        if wanted and params.get("v") in ("v1", "v1beta1"):
            return params["v"]
    return None


def columns(kind: Kind) -> list[dict[str, Any]]:
    """The CRD's printer columns for the served version (AGE alone when it names none)."""
    return list(crd_version(kind).get("additionalPrinterColumns") or [_AGE])


def table(
    kind: Kind,
    objects: list[dict[str, Any]],
    version: str,
    resource_version: str,
    include_object: str = "Metadata",
    now: datetime | None = None,
) -> dict[str, Any]:
    """`objects` as a Table; `include_object` is the request's `includeObject` (None, Metadata,
    Object), what each row carries besides its cells."""
    printer = columns(kind)
    definitions = [_NAME] + [
        {
            "name": c["name"],
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in printer
    ]
    moment = now or datetime.now(UTC)
    rows = []
    for obj in objects:
        row: dict[str, Any] = {
            "cells": [obj["metadata"]["name"], *(_cell(obj, c, moment) for c in printer)]
        }
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": f"meta.k8s.io/{version}",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": f"meta.k8s.io/{version}",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }


def _cell(obj: dict[str, Any], column: dict[str, Any], now: datetime) -> Any:
    values = find(obj, column["jsonPath"])
    if not values:
        return None
    kind = column.get("type", "string")
    if kind == "date":
        try:
            then = datetime.fromisoformat(str(values[0]).replace("Z", "+00:00"))
        except ValueError:
            return str(values[0])
        return human_duration((now - then).total_seconds())
    if kind == "string":
        return " ".join(v if isinstance(v, str) else _text(v) for v in values)
    return values[0]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def human_duration(seconds: float) -> str:
    """An age as kubectl writes it: `45s`, `5m30s`, `2h`, `3d4h`, `2y10d`."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    days = hours // 24
    if hours < 24 * 365 * 8:
        return f"{days // 365}y{days % 365}d" if days % 365 else f"{days // 365}y"
    return f"{days // 365}y"
