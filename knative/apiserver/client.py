"""A client of the Kubernetes REST conventions: the local plane's control API (or any API server).

The CLI uses it; `Status` failures come back as the same `ApiError` classes the plane raises.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from knserve.knative.apiserver.errors import ApiError, NotFound, from_status
from knserve.knative.apiserver.kinds import Kind, by_kind, served

DEFAULT_API = "http://127.0.0.1:8081"


def default_data_dir() -> Path:
    """Where `knserve up` keeps its state, and its `plane.json` record of the ports it serves."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "knserve"


def default_api_url() -> str:
    """`$KNSERVE_API`, else the URL `knserve up` recorded, else the default port on loopback."""
    if os.environ.get("KNSERVE_API"):
        return os.environ["KNSERVE_API"]
    record = default_data_dir() / "plane.json"
    if record.is_file():
        return str(json.loads(record.read_text())["api"])
    return DEFAULT_API


class Client:
    def __init__(
        self, base_url: str | None = None, token: str | None = None, timeout: float = 30.0
    ) -> None:
        self.base_url = (base_url or default_api_url()).rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    def _path(
        self, kind: Kind, namespace: str | None, name: str | None = None, sub: str | None = None
    ) -> str:
        path = f"/apis/{kind.group}/{kind.version}"
        path += f"/namespaces/{namespace}/{kind.plural}" if namespace else f"/{kind.plural}"
        if name:
            path += f"/{name}"
        if sub:
            path += f"/{sub}"
        return path

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(
                f"cannot reach the control API at {self.base_url} ({exc}); is `knserve up` running? "
                "(set --api or $KNSERVE_API for another address)"
            ) from None
        try:
            body = response.json() if response.content else {}
        except ValueError:
            # Not a Status: something other than an API server answered at this address.
            body = {
                "message": f"HTTP {response.status_code} from {self.base_url}{path}: "
                f"{response.text[:200]}"
            }
            if response.status_code < 400:
                raise ApiError(body["message"]) from None
        if response.status_code >= 400:
            raise from_status(body if isinstance(body, dict) else {}, response.status_code)
        return body

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        return self._call("GET", self._path(kind, namespace, name))

    def list(
        self, kind: Kind, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        return self._call("GET", self._path(kind, namespace), params=params)["items"]

    def create(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        namespace = in_scope(kind, obj)
        return self._call("POST", self._path(kind, namespace), json=obj)

    def replace(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._call(
            "PUT", self._path(kind, kind.scope(meta.get("namespace")), meta["name"]), json=obj
        )

    def patch(self, kind: Kind, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            "PATCH",
            self._path(kind, namespace, name),
            json=patch,
            headers={"content-type": "application/merge-patch+json"},
        )

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        self._call("DELETE", self._path(kind, namespace, name))

    def apply(
        self, obj: dict[str, Any], namespace: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Create the object, or replace its spec (and labels/annotations) if it exists."""
        kind = kind_of(obj)
        meta = obj.setdefault("metadata", {})
        scope = in_scope(kind, obj, namespace)
        try:
            current = self.get(kind, scope, meta["name"])
        except NotFound:
            return "created", self.create(kind, obj)
        merged = {**current, **{k: v for k, v in obj.items() if k not in ("metadata", "status")}}
        merged["metadata"] = {
            **current["metadata"],
            **{k: v for k, v in meta.items() if k in ("labels", "annotations")},
        }
        if merged == current:
            return "unchanged", current
        return "configured", self.replace(kind, merged)


def in_scope(kind: Kind, obj: dict[str, Any], namespace: str | None = None) -> str:
    """Put `obj` in its namespace (in place): `namespace`, else its own, else "default"; a
    cluster-scoped object loses any namespace it names. Returns the namespace ("" for none)."""
    meta = obj.setdefault("metadata", {})
    scope = kind.scope(namespace or meta.get("namespace"))
    if kind.namespaced:
        meta["namespace"] = scope
    else:
        meta.pop("namespace", None)
    return scope


def kind_of(obj: dict[str, Any]) -> Kind:
    """The kind of `obj` by its apiVersion and kind; NotFound (kubectl's "no matches for kind")
    naming the kinds the plane serves when it serves no such kind."""
    kind = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
    if kind is None:
        raise NotFound(
            f'no matches for kind "{obj.get("kind")}" in version "{obj.get("apiVersion")}"; '
            f"the plane serves: {served()}"
        )
    return kind


def load_documents(path: Path) -> list[dict[str, Any]]:
    import yaml

    text = path.read_text() if str(path) != "-" else __import__("sys").stdin.read()
    return [doc for doc in yaml.safe_load_all(text) if doc]
