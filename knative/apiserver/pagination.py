"""`limit` and `continue` on lists, as the API server pages them (`kubectl get --chunk-size`).

A page holds at most `limit` objects; when more remain, the list's metadata carries a `continue`
token and `remainingItemCount`. The token names the last object returned (namespace and name, the
order lists come in) and the resourceVersion of the first page, so the next page starts after it.
Unlike etcd, SQLite keeps no snapshot of that version: a later page reads the objects as they are
now, which is what the API server does too once the snapshot has been compacted.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from knserve.knative.apiserver.errors import BadRequest


def _token(resource_version: str, last: dict[str, Any]) -> str:
    meta = last["metadata"]
    raw = orjson.dumps({"rv": resource_version, "start": [meta.get("namespace", ""), meta["name"]]})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(token: str) -> tuple[str, tuple[str, str]]:
    try:
        decoded = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        namespace, name = decoded["start"]
        return str(decoded["rv"]), (str(namespace), str(name))
    except (ValueError, KeyError, TypeError):
        raise BadRequest(
            "continue is not a token this server gave; list again without it"
        ) from None


def page(
    items: list[dict[str, Any]], limit: int | None, token: str | None, resource_version: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The page of `items` (sorted by namespace and name) that `limit` and `token` ask for, and
    the list metadata to send with it."""
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if token:
        first_rv, start = _after(token)
        items = [
            o for o in items if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start
        ]
        meta["resourceVersion"] = first_rv
    if limit and len(items) > limit:
        shown = items[:limit]
        meta["continue"] = _token(meta["resourceVersion"], shown[-1])
        meta["remainingItemCount"] = len(items) - limit
        return shown, meta
    return items, meta
