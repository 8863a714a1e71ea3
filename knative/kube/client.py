"""The `kube` target: the same objects, sent to a real Kubernetes cluster.

`KubeClient` has the methods of the local plane's `Client` (`get`, `list`, `create`, `replace`,
`patch`, `delete`, `apply`) with the same arguments and returns, so a CLI command works on either;
`client_for` picks one from the `--target`, `--context` and `--api` options.

It is built on the official `kubernetes` client, chosen over kr8s and lightkube because:

- its kubeconfig loader is the reference one: every auth scheme kubectl knows (tokens, client
  certificates, exec plugins such as `aws eks get-token`, OIDC refresh) and in-cluster service
  accounts, which kopf's own `login_via_client` also relies on;
- its `CustomObjectsApi` speaks to any CRD by group, version and plural with plain dicts: no
  generated model classes, no discovery round trip, which is all knserve needs since its kinds
  (`knative.apiserver.kinds`) are a fixed registry;
- it sends server-side apply as Kubernetes defines it (`PATCH` with
  `application/apply-patch+yaml`, `fieldManager`, `force`), and it is the most used and the one
  maintained by Kubernetes' own SIG API Machinery.

Writes are server-side apply with the field manager `knserve`: the cluster merges the object with
what others (Knative's defaulting webhook, a user's `kubectl edit`) own, and an unchanged object is
a no-op. Everything is validated against the real CRD schemas before it is sent
(`Kind.errors`), so a typo is refused with the field path instead of a round trip.
A server that does not accept apply patches (415, as the local plane's control API today) gets
the same result by create-or-replace, decided once per client.

`ApiException`s become `knserve.knative.apiserver.errors.ApiError` subclasses built from the `Status` body,
so callers catch the same `NotFound`, `Conflict` and `Invalid` as on the local plane.

`kubernetes` is imported when a `KubeClient` is built, never at import: the local target does not
pay for it, and it is an optional extra (`knserve[kube]`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from knserve.knative.apiserver.client import Client, kind_of
from knserve.knative.apiserver.errors import ApiError, Invalid, NotFound, from_status
from knserve.knative.apiserver.kinds import Kind

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

__all__ = [
    "APPLY_PATCH",
    "FIELD_MANAGER",
    "TARGETS",
    "KubeClient",
    "ResourceClient",
    "client_for",
    "validate",
]

log = logging.getLogger(__name__)

# The library sets no content type on POST and PUT; the API server would assume JSON, but say it.
JSON = "application/json"
APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
FIELD_MANAGER = "knserve"
TARGETS = ("local", "kube")
# Metadata the API server owns; an applied object carrying them (say, from `get -o yaml`) would
# turn the apply into a precondition (resourceVersion) or be refused (managedFields).
_SERVER_OWNED = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# The API server's message for a group/version/resource it does not serve (no CRD installed).
_UNSERVED = "could not find the requested resource"
_INSTALL_HINT = "the kube target needs the Kubernetes client: pip install 'knserve[kube]'"


class ResourceClient(Protocol):
    """What the CLI needs of a target: the local plane's `Client` and `KubeClient` both are one."""

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]: ...

    def list(
        self, kind: Kind, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]: ...

    def create(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]: ...

    def replace(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]: ...

    def patch(
        self, kind: Kind, namespace: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any]: ...

    def delete(self, kind: Kind, namespace: str, name: str) -> None: ...

    def apply(
        self, obj: dict[str, Any], namespace: str | None = None
    ) -> tuple[str, dict[str, Any]]: ...


def client_for(
    target: str = "local",
    context: str | None = None,
    api: str | None = None,
    kubeconfig: str | Path | None = None,
) -> Client | KubeClient:
    """The client of a target: the local plane (at `api`), or the cluster of a kubeconfig context.

    Naming a `context` implies the kube target, as `kubectl --context` does. `api` is the local
    plane's address only; the kube target ignores it, since the CLI fills it from $KNSERVE_API,
    which a user of both targets may well have set.
    """
    if target not in TARGETS:
        raise ApiError(f"unknown target {target!r}; use one of: {', '.join(TARGETS)}")
    if target == "kube" or context is not None:
        return KubeClient.from_kubeconfig(kubeconfig, context)
    return Client(api)


def validate(kind: Kind, obj: dict[str, Any]) -> None:
    """Raise `Invalid` (with every field path) if `obj` breaks its CRD schema or Knative's rules."""
    errors = kind.errors({k: v for k, v in obj.items() if k != "status"}, local_plane=False)
    if errors:
        name = (obj.get("metadata") or {}).get("name")
        raise Invalid(f'{kind.kind} "{name}" is invalid: ' + "; ".join(errors))


def _kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise ApiError(_INSTALL_HINT) from None
    return kubernetes


class KubeClient:
    """A client of a Kubernetes cluster with the local `Client`'s methods (module docstring).

    `namespace` is the default for objects that name none: the kubeconfig context's namespace,
    or the service account's when running in a pod.
    """

    def __init__(
        self,
        api_client: ApiClient,
        namespace: str = "default",
        timeout: float = 30.0,
        field_manager: str = FIELD_MANAGER,
    ) -> None:
        kubernetes = _kubernetes()
        self.api_client = api_client
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self.timeout = timeout
        self.field_manager = field_manager
        self.base_url = str(api_client.configuration.host)
        # Cleared the first time the server answers an apply patch with 415 (module docstring).
        self.server_side_apply = True

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    def from_kubeconfig(
        cls, path: str | Path | None = None, context: str | None = None, **kwargs: Any
    ) -> KubeClient:
        """The cluster of `context` (default: the current one) in the kubeconfig at `path`
        (default: `$KUBECONFIG`, else `~/.kube/config`)."""
        kubernetes = _kubernetes()
        # $KUBECONFIG read now, not at import as the library's default is (paths joined by ':').
        config_file = str(path) if path is not None else os.environ.get("KUBECONFIG") or None
        where = config_file or "~/.kube/config"
        try:
            contexts, active = kubernetes.config.list_kube_config_contexts(config_file)
            chosen = active
            if context is not None:
                chosen = next((c for c in contexts or [] if c.get("name") == context), None)
                if chosen is None:
                    names = ", ".join(sorted(c["name"] for c in contexts or [])) or "none"
                    raise ApiError(
                        f"no context {context!r} in the kubeconfig {where}; it has: {names}"
                    )
            api_client = kubernetes.config.new_client_from_config(config_file, context)
        except kubernetes.config.ConfigException as exc:
            raise ApiError(
                f"cannot load the kubeconfig {where}: {exc}; point $KUBECONFIG at one, or pass "
                "--context"
            ) from None
        namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
        return cls(api_client, namespace=namespace, **kwargs)

    @classmethod
    def in_cluster(cls, **kwargs: Any) -> KubeClient:
        """The cluster a pod runs in, with its service account's token and namespace."""
        kubernetes = _kubernetes()
        configuration = kubernetes.client.Configuration()
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except kubernetes.config.ConfigException as exc:
            raise ApiError(
                f"not running in a Kubernetes pod with a service account: {exc}"
            ) from None
        namespace = "default"
        if _SERVICE_ACCOUNT_NAMESPACE.is_file():
            namespace = _SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or namespace
        return cls(kubernetes.client.ApiClient(configuration), namespace=namespace, **kwargs)

    @classmethod
    def from_environment(
        cls, path: str | Path | None = None, context: str | None = None, **kwargs: Any
    ) -> KubeClient:
        """In a pod (and no kubeconfig or context asked for), its service account; else the
        kubeconfig. This is what the operator uses."""
        if path is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster(**kwargs)
        return cls.from_kubeconfig(path, context, **kwargs)

    def close(self) -> None:
        self.api_client.close()

    # ---- the calls ---------------------------------------------------------------------------

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One request; Status failures become `ApiError`s, unreachable servers say where."""
        import urllib3

        kubernetes = _kubernetes()
        try:
            return method(*args, _request_timeout=self.timeout, **kwargs)
        except kubernetes.client.ApiException as exc:
            raise _api_error(exc) from None
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(
                f"cannot reach the Kubernetes API at {self.base_url} ({exc.__class__.__name__}: "
                f"{exc}); check the kubeconfig's server and that the cluster is up"
            ) from None

    def _served(self, kind: Kind, error: ApiError) -> ApiError:
        """The API server's 404 for a kind it does not serve, with the CRD to install. (A 404
        for a missing namespace names the namespace and is left as it is.)"""
        if isinstance(error, NotFound) and _UNSERVED in error.message:
            return NotFound(
                f"{error.message}: the cluster at {self.base_url} does not serve "
                f"{kind.plural}.{kind.group}/{kind.version}; install its CRD (knserve ships it in "
                f"knserve/knative/crds/{kind.crd_file})"
            )
        return error

    def _op(
        self, verb: str, kind: Kind, namespace: str | None, suffix: str = ""
    ) -> tuple[Any, tuple[str, ...]]:
        """The custom-objects call for `verb` (get, create, replace, …; `suffix` "_status" for
        the subresource) and its leading arguments: the namespaced one, or the cluster one for a
        cluster-scoped kind."""
        if kind.namespaced:
            return (
                getattr(self.custom, f"{verb}_namespaced_custom_object{suffix}"),
                (kind.group, kind.version, namespace or self.namespace, kind.plural),
            )
        return getattr(self.custom, f"{verb}_cluster_custom_object{suffix}"), (
            kind.group,
            kind.version,
            kind.plural,
        )

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any]:
        call, where = self._op("get", kind, namespace)
        found: dict[str, Any] = self._call(call, *where, name)
        return found

    def find(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None if it does not exist."""
        try:
            return self.get(kind, namespace, name)
        except NotFound:
            return None

    def list(
        self, kind: Kind, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects of `kind` in `namespace`, or in every namespace when it is None."""
        options = {"label_selector": label_selector} if label_selector else {}
        try:
            if namespace is None or not kind.namespaced:
                found = self._call(
                    self.custom.list_cluster_custom_object,
                    kind.group,
                    kind.version,
                    kind.plural,
                    **options,
                )
            else:
                call, where = self._op("list", kind, namespace)
                found = self._call(call, *where, **options)
        except ApiError as exc:
            raise self._served(kind, exc) from None
        return list(found.get("items") or [])

    def create(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            meta.setdefault("namespace", self.namespace)
        else:
            meta.pop("namespace", None)
        validate(kind, obj)
        call, where = self._op("create", kind, meta.get("namespace"))
        try:
            created: dict[str, Any] = self._call(
                call,
                *where,
                obj,
                field_manager=self.field_manager,
                _headers={"Content-Type": JSON},
            )
        except ApiError as exc:
            raise self._served(kind, exc) from None
        return created

    def replace(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        validate(kind, obj)
        call, where = self._op("replace", kind, meta.get("namespace"))
        replaced: dict[str, Any] = self._call(
            call,
            *where,
            meta["name"],
            obj,
            field_manager=self.field_manager,
            _headers={"Content-Type": JSON},
        )
        return replaced

    def replace_status(self, kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT the status subresource; a stale `metadata.resourceVersion` is a `Conflict`."""
        meta = obj["metadata"]
        call, where = self._op("replace", kind, meta.get("namespace"), "_status")
        replaced: dict[str, Any] = self._call(
            call,
            *where,
            meta["name"],
            obj,
            field_manager=self.field_manager,
            _headers={"Content-Type": JSON},
        )
        return replaced

    def patch(self, kind: Kind, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch, validated by applying it to the current object first."""
        from knserve.knative.apiserver.store import merge_patch

        current = self.get(kind, namespace, name)
        validate(kind, merge_patch(current, patch))
        call, where = self._op("patch", kind, namespace)
        patched: dict[str, Any] = self._call(
            call,
            *where,
            name,
            patch,
            field_manager=self.field_manager,
            _content_type=MERGE_PATCH,
        )
        return patched

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        call, where = self._op("delete", kind, namespace)
        self._call(call, *where, name)

    def apply(
        self, obj: dict[str, Any], namespace: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Server-side apply of `obj`: ("created" | "configured" | "unchanged", the object).

        Like the local `Client.apply`, `namespace` (else the object's, else the context's) is
        written into `obj`'s metadata. Status and server-owned metadata are not sent.
        """
        kind = kind_of(obj)
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or self.namespace
        else:
            meta.pop("namespace", None)
        scope = meta.get("namespace", "")
        body = {k: copy.deepcopy(v) for k, v in obj.items() if k != "status"}
        for key in _SERVER_OWNED:
            body["metadata"].pop(key, None)
        validate(kind, body)
        current = self.find(kind, scope, meta["name"])
        if self.server_side_apply:
            call, where = self._op("patch", kind, scope)
            try:
                # The dict goes out as JSON, which is YAML (the library does so since 25).
                applied: dict[str, Any] = self._call(
                    call,
                    *where,
                    meta["name"],
                    body,
                    field_manager=self.field_manager,
                    force=True,
                    _content_type=APPLY_PATCH,
                )
            except ApiError as exc:
                if exc.code != 415:
                    raise self._served(kind, exc) from None
                log.info(
                    "%s does not accept apply patches (%s); using create or replace",
                    self.base_url,
                    exc.message,
                )
                self.server_side_apply = False
            else:
                if applied is None:
                    # the library maps only 200 to a body; an apply that creates answers 201
                    applied = self.get(kind, scope, meta["name"])
                return _action(current, applied), applied
        return self._create_or_replace(kind, body, current)

    def _create_or_replace(
        self, kind: Kind, body: dict[str, Any], current: dict[str, Any] | None
    ) -> tuple[str, dict[str, Any]]:
        """Apply without server-side apply: the object's spec and metadata maps over the current."""
        if current is None:
            return "created", self.create(kind, body)
        merged = {**current, **{k: v for k, v in body.items() if k != "metadata"}}
        merged["metadata"] = {
            **current["metadata"],
            **{
                k: v
                for k, v in body["metadata"].items()
                if k in ("labels", "annotations", "ownerReferences")
            },
        }
        if merged == current:
            return "unchanged", current
        return "configured", self.replace(kind, merged)


def _action(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    if before is None:
        return "created"
    changed = before["metadata"].get("resourceVersion") != after["metadata"].get("resourceVersion")
    return "configured" if changed else "unchanged"


def _api_error(exc: Any) -> ApiError:
    """The `ApiError` an `ApiException` stands for, from its `Status` body when it has one."""
    raw = exc.body.decode(errors="replace") if isinstance(exc.body, bytes) else exc.body or ""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("kind") == "Status":
        error = from_status(body, exc.status)
        if type(error) is ApiError and body.get("reason"):
            error.reason = body["reason"]  # Unauthorized, Forbidden, …: keep the server's word
        return error
    # No Status (a proxy, a load balancer, a server that is not Kubernetes): the code decides.
    error = (NotFound if exc.status == 404 else ApiError)(
        f"HTTP {exc.status} {exc.reason}: {raw.strip()[:200] or 'no body'}"
    )
    error.code = exc.status
    return error
