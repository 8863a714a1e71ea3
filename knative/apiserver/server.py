"""The local plane's control API: the Kubernetes REST conventions over the `Store`.

    /apis/{group}/{version}/namespaces/{ns}/{plural}            GET (list, ?watch=true), POST
    /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}     GET, PUT, PATCH (merge), DELETE
    /apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/status   GET, PUT, PATCH
    /apis/{group}/{version}/{plural}                            GET across namespaces
    /apis, /apis/{group}/{version}                              discovery (as the API server's)

Because the paths, verbs, bodies and `Status` errors are Kubernetes', one client (knserve's, or
`kubernetes`/`kopf`) serves both the local plane and a real cluster. It is not the hot path, so it
is a Starlette app. When it listens on anything but loopback, every request needs the bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from knserve.knative.apiserver import field_managers
from knserve.knative.apiserver.core import core_routes
from knserve.knative.apiserver.discovery import group_list, resource_list, version_info
from knserve.knative.apiserver.errors import ApiError, BadRequest, Expired, NotFound
from knserve.knative.apiserver.kinds import Kind, by_plural, served
from knserve.knative.apiserver.openapi import v2_document, v3_document, v3_root
from knserve.knative.apiserver.pagination import page
from knserve.knative.apiserver.patches import json_patched
from knserve.knative.apiserver.store import Store, merge_patched, selects
from knserve.knative.apiserver.tables import table, table_version

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
JSON_PATCH = "application/json-patch+json"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def _kind(request: Request) -> Kind:
    params = request.path_params
    kind = by_plural(params["group"], params["plural"])
    if kind is None or kind.version != params["version"]:
        raise NotFound(
            f"the server could not find the requested resource {params['plural']}.{params['group']}/"
            f"{params['version']}; it serves: {served()}"
        )
    namespace = params.get("namespace")
    if kind.namespaced != (namespace is not None):
        # As the API server: a namespaced kind has no cluster-wide item path, a cluster-scoped
        # kind no path under a namespace (listing a namespaced kind across namespaces is fine).
        listing = namespace is None and "name" not in params and request.method == "GET"
        if not listing:
            where = "under /namespaces/{namespace}/" if kind.namespaced else "without a namespace"
            raise NotFound(
                f"{kind.plural}.{kind.group} is "
                f"{'namespaced' if kind.namespaced else 'cluster-scoped'}: address it {where}"
            )
    return kind


def _apply(
    store: Store, kind: Kind, namespace: str, name: str, body: Any, params: Mapping[str, str]
) -> Response:
    """Server-side apply: create the object, or merge the applied fields into it, tracking each
    field manager's fields (`field_managers`), a 409 on another manager's field unless forced."""
    if not isinstance(body, dict):
        raise BadRequest("an apply body must be an object")
    manager = params.get("fieldManager")
    if not manager:
        raise BadRequest("fieldManager: Required value: is required for apply patch")
    meta = body.setdefault("metadata", {})
    if not kind.namespaced:
        meta.pop("namespace", None)
    if meta.get("name", name) != name or meta.get("namespace", namespace) != namespace:
        raise BadRequest("metadata.name and metadata.namespace must match the path")
    meta["name"] = name
    if kind.namespaced:
        meta["namespace"] = namespace
    force = params.get("force") in ("true", "1")
    current = store.find(kind, namespace, name)
    result = field_managers.apply(current, body, manager, kind.api_version, force)
    if current is None:
        return _json(store.create(kind, result), 201)
    return _json(store.replace(kind, result))


def _with_owner(
    current: dict[str, Any], updated: dict[str, Any], kind: Kind, manager: str | None
) -> dict[str, Any]:
    """`updated` with managedFields: kept as they were when the request leaves them out (as the
    API server does), and with `manager` owning what it changed."""
    meta = updated.setdefault("metadata", {})
    if "managedFields" not in meta and "managedFields" in current.get("metadata", {}):
        meta["managedFields"] = current["metadata"]["managedFields"]
    if manager:
        meta["managedFields"] = field_managers.record_update(
            current, updated, manager, kind.api_version
        )
    return updated


async def _body(request: Request) -> Any:
    raw = await request.body()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None


def create_app(store: Store, token: str | None = None) -> Starlette:
    """The control API over `store`; `token`, when given, is required as a bearer token."""

    async def collection(request: Request) -> Response:
        kind = _kind(request)
        namespace = request.path_params.get("namespace")
        if request.method == "POST":
            obj = await _body(request)
            if isinstance(obj, dict):
                meta = obj.setdefault("metadata", {})
                if isinstance(meta, dict) and kind.namespaced:
                    meta.setdefault("namespace", namespace)
                    if meta.get("namespace") != namespace:
                        raise BadRequest(
                            f"metadata.namespace {meta['namespace']!r} does not match the path's namespace {namespace!r}"
                        )
            manager = request.query_params.get("fieldManager")
            if manager and isinstance(obj, dict):
                obj.setdefault("metadata", {})["managedFields"] = field_managers.record_update(
                    {}, obj, manager, kind.api_version
                )
            with _dry_run(store, request):
                return _json(store.create(kind, obj), 201)
        labels = request.query_params.get("labelSelector")
        fields = request.query_params.get("fieldSelector")
        if request.query_params.get("watch") in ("true", "1"):
            return _watch(
                store,
                kind,
                namespace,
                selects(labels, fields),
                request.query_params,
                table_version(request.headers.get("accept", "")),
            )
        rv = str(store.resource_version())
        items, meta = page(
            store.list(kind, namespace, labels, fields),
            _int_param(request.query_params, "limit"),
            request.query_params.get("continue"),
            rv,
        )
        as_table = table_version(request.headers.get("accept", ""))
        if as_table:
            shown = table(kind, items, as_table, rv, request.query_params.get("includeObject", ""))
            shown["metadata"] = meta
            return _json(shown)
        return _json(
            {
                "apiVersion": kind.api_version,
                "kind": f"{kind.kind}List",
                "metadata": meta,
                "items": items,
            }
        )

    async def item(request: Request) -> Response:
        kind = _kind(request)
        namespace, name = request.path_params.get("namespace", ""), request.path_params["name"]
        subresource = request.path_params.get("subresource")
        if subresource not in (None, "status"):
            raise NotFound(f"{kind.plural} have no subresource {subresource!r} (only status)")
        if request.method == "GET":
            found = store.get(kind, namespace, name)
            as_table = table_version(request.headers.get("accept", ""))
            if as_table and subresource is None:
                rv = found["metadata"]["resourceVersion"]
                include = request.query_params.get("includeObject", "")
                return _json(table(kind, [found], as_table, rv, include))
            return _json(found)
        if request.method == "DELETE":
            # kubectl sends DeleteOptions (dryRun, propagationPolicy) as the body
            options = await _body(request) if await request.body() else {}
            with _dry_run(store, request, options):
                store.delete(kind, namespace, name)
            return _json(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Success",
                    "details": {"name": name, "group": kind.group, "kind": kind.plural},
                }
            )
        body = await _body(request)
        with _dry_run(store, request):
            return _write(request, kind, namespace, name, subresource, body)

    def _write(
        request: Request,
        kind: Kind,
        namespace: str,
        name: str,
        subresource: str | None,
        body: Any,
    ) -> Response:
        manager = request.query_params.get("fieldManager") if subresource is None else None
        if request.method == "PUT":
            if not isinstance(body, dict):
                raise BadRequest("the body must be a JSON object")
            meta = body.setdefault("metadata", {})
            if not kind.namespaced:
                meta.pop("namespace", None)
            if meta.get("name", name) != name or meta.get("namespace", namespace) != namespace:
                raise BadRequest("metadata.name and metadata.namespace must match the path")
            meta["name"] = name
            if kind.namespaced:
                meta["namespace"] = namespace
            current = store.get(kind, namespace, name)
            return _json(
                store.replace(kind, _with_owner(current, body, kind, manager), subresource)
            )
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type == APPLY_PATCH and subresource is None:
            return _apply(store, kind, namespace, name, body, request.query_params)
        if content_type == JSON_PATCH:
            current = store.get(kind, namespace, name)
            patched = _with_owner(current, json_patched(current, body), kind, manager)
            return _json(store.replace(kind, patched, subresource))
        if content_type not in (MERGE_PATCH, "application/json"):
            # the API server's words for a custom resource, whose types have no patch strategy
            raise ApiUnsupported(
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {APPLY_PATCH} (got {content_type or 'none'}; "
                "custom resources take no strategic merge patch: use kubectl patch --type=merge)"
            )
        current = store.get(kind, namespace, name)
        merged = merge_patched(current, body)
        return _json(store.replace(kind, _with_owner(current, merged, kind, manager), subresource))

    async def discovery(request: Request) -> Response:
        return _json(group_list())

    async def group_version(request: Request) -> Response:
        group, version = request.path_params["group"], request.path_params["version"]
        resources = resource_list(group, version)
        if resources is None:
            raise NotFound(f"no API group version {group}/{version}; the plane serves: {served()}")
        return _json(resources)

    async def version(request: Request) -> Response:
        return _json(version_info())

    async def openapi_v2(request: Request) -> Response:
        accept = request.headers.get("accept", "*/*")
        if not any(t in accept for t in ("json", "*/*")):
            # client-go asks for gnostic's protobuf; 406 tells it only JSON is here
            raise NotAcceptable(f"/openapi/v2 is served as application/json only (asked: {accept})")
        return Response(v2_document(), media_type="application/json")

    async def openapi_v3(request: Request) -> Response:
        return _json(v3_root())

    async def openapi_v3_group(request: Request) -> Response:
        group, version = request.path_params["group"], request.path_params["version"]
        if resource_list(group, version) is None:
            raise NotFound(
                f"no OpenAPI document for {group}/{version}; the plane serves: {served()}"
            )
        return Response(
            v3_document(group, version),
            media_type="application/json",
            # the URL carries the content's hash, so a client may keep it as long as it likes
            headers={"Cache-Control": "public, immutable"},
        )

    async def healthz(request: Request) -> Response:
        return Response("ok", media_type="text/plain")

    routes = [
        Route("/healthz", healthz),
        Route("/version", version),
        Route("/openapi/v2", openapi_v2),
        Route("/openapi/v3", openapi_v3),
        Route("/openapi/v3/apis/{group}/{version}", openapi_v3_group),
        Route("/apis", discovery),
        Route("/apis/{group}/{version}", group_version),
        Route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
            collection,
            methods=["GET", "POST"],
        ),
        Route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
            item,
            methods=["GET", "PUT", "PATCH", "DELETE"],
        ),
        Route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}/{subresource}",
            item,
            methods=["GET", "PUT", "PATCH"],
        ),
        # cluster-scoped kinds (and, for GET, a namespaced kind across every namespace)
        Route("/apis/{group}/{version}/{plural}", collection, methods=["GET", "POST"]),
        Route(
            "/apis/{group}/{version}/{plural}/{name}",
            item,
            methods=["GET", "PUT", "PATCH", "DELETE"],
        ),
        Route(
            "/apis/{group}/{version}/{plural}/{name}/{subresource}",
            item,
            methods=["GET", "PUT", "PATCH"],
        ),
        *core_routes(store),
    ]

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _json(exc.status(), exc.code)

    async def no_route(request: Request, exc: Exception) -> Response:
        # A path no route serves (/api/v1/pods, /apis/{group}) is a Status too, as the API server's.
        if getattr(exc, "status_code", 404) == 405:
            error: ApiError = MethodNotAllowed(
                f"the server does not allow this method on the requested resource "
                f"({request.method} {request.url.path})"
            )
        else:
            error = NotFound(
                f"the server could not find the requested resource ({request.url.path}); it "
                f"serves /apis/{{group}}/{{version}}/namespaces/{{namespace}}/{{plural}} for: {served()}"
            )
        return _json(error.status(), error.code)

    app = Starlette(
        routes=routes,
        exception_handlers={ApiError: api_error, 404: no_route, 405: no_route},
    )
    if token:
        app.add_middleware(_BearerToken, token=token)
    return app


def _dry_run(
    store: Store, request: Request, options: Any = None
) -> contextlib.AbstractContextManager[None]:
    """`dryRun=All` (a query parameter, or a DeleteOptions field): the write is checked and
    answered, and nothing is stored."""
    values = request.query_params.getlist("dryRun")
    if not values and isinstance(options, dict):
        values = list(options.get("dryRun") or [])
    if not values:
        return contextlib.nullcontext()
    if values != ["All"]:
        raise BadRequest(f'dryRun: Unsupported value: "{values[0]}": supported values: "All"')
    return store.dry_run()


class EmbeddedServer(uvicorn.Server):
    """uvicorn serving one part of the plane: without its signal handlers, because the plane owns
    SIGINT/SIGTERM and stops every part; uvicorn's would stop only this one and swallow the signal."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiUnsupported(ApiError):
    code, reason = 415, "UnsupportedMediaType"


class NotAcceptable(ApiError):
    code, reason = 406, "NotAcceptable"


class MethodNotAllowed(ApiError):
    code, reason = 405, "MethodNotAllowed"


def _watch(
    store: Store,
    kind: Kind,
    namespace: str | None,
    matches: Callable[[dict[str, Any]], bool],
    params: Mapping[str, str],
    as_table: str | None = None,
) -> Response:
    """Newline-delimited watch events, as Kubernetes sends them.

    Without `resourceVersion` (or with "0") the objects that exist come first, as ADDED; with one
    (from a list), the changes after it. A version older than the store's history gets an ERROR
    event with a 410 Expired Status, so the client lists again. `timeoutSeconds` ends the stream.
    Only objects that `matches` (the label and field selectors) are sent.
    """
    since = _int_param(params, "resourceVersion")
    timeout = _int_param(params, "timeoutSeconds")
    try:
        queue = store.watch(since or None)
    except Expired as exc:
        gone = orjson.dumps({"type": "ERROR", "object": exc.status()}) + b"\n"
        return StreamingResponse(iter([gone]), media_type="application/json")
    existing = [] if since else [o for o in store.list(kind, namespace) if matches(o)]
    include = params.get("includeObject", "")

    def event(kind_of_event: str, obj: dict[str, Any]) -> bytes:
        # `kubectl get -w` watches for Tables: each event's object is a one-row Table
        shown = (
            table(kind, [obj], as_table, obj["metadata"]["resourceVersion"], include)
            if as_table
            else obj
        )
        return orjson.dumps({"type": kind_of_event, "object": shown}) + b"\n"

    async def events() -> AsyncIterator[bytes]:
        try:
            for obj in existing:
                yield event("ADDED", obj)
            async with asyncio.timeout(timeout or None):
                while True:
                    change = await queue.get()
                    meta = change.object["metadata"]
                    if change.kind is not kind or (namespace and meta["namespace"] != namespace):
                        continue
                    if not matches(change.object):
                        continue
                    yield event(change.type, change.object)
        except TimeoutError:
            return  # timeoutSeconds: the stream ends normally and the client watches again
        finally:
            store.unwatch(queue)

    return StreamingResponse(events(), media_type="application/json")


def _int_param(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} is {raw!r}, it must be a whole number") from None
    if value < 0:
        raise BadRequest(f"{name} is {value}, it must be 0 or more")
    return value


class _BearerToken:
    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = JSONResponse(
                    {
                        "kind": "Status",
                        "status": "Failure",
                        "reason": "Unauthorized",
                        "code": 401,
                        "message": "this control API needs 'Authorization: Bearer <token>'",
                    },
                    status_code=401,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
