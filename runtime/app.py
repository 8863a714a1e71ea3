"""The model server's ASGI application.

A bare ASGI callable rather than a framework: the V2 goal (80 % of a bare uvicorn app calling the
same predict) leaves no room for a middleware stack, per-request objects or a router that tries
patterns in turn. Routing is a dict lookup for fixed paths and a prefix split for model paths;
bodies are parsed with orjson and outputs serialised from NumPy directly.

Framework models (`PredictorModel`) take the fast path: the request is decoded straight into the
predictor's arrays. Custom models run their `preprocess → predict → postprocess` hooks; with the
batcher on, their V1 `instances` join a batch whose one call of the hooks sees every request's
rows (KServe's batcher does this for any predictor). Either way a request for a model is one
`_serve` call, the single place where a model is called, timed, counted, batched, cached and
logged.

Errors: every `InferenceError` becomes `{"error": message}` with its status. A model raising
`ValueError`/`TypeError` on a request's input is the caller's mistake (400, with the model's
reason); any other exception from a model is a 500 with its type and message. Nothing a request
sends can take the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
import orjson

from knserve.runtime import protocols
from knserve.runtime.asgi import Receive, Scope, Send, read_body, send_body, send_json
from knserve.runtime.errors import (
    InferenceError,
    InvalidInput,
    ModelNotFound,
    NotImplementedByModel,
)
from knserve.runtime.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from knserve.runtime.metrics import Metrics
from knserve.runtime.model import Model
from knserve.runtime.payload_logger import LoggerConfig, PayloadLogger
from knserve.runtime.protocols import cloudevents as ce
from knserve.runtime.protocols import v1, v2
from knserve.runtime.repository import READY, ModelRepository, ServedModel
from knserve.runtime.settings import RuntimeSettings

log = logging.getLogger(__name__)

_EXTENSIONS = ["model_repository", "binary_tensor_data", "cloudevents", "metrics"]

try:
    SERVER_VERSION = version("knserve")
except PackageNotFoundError:  # running from a source tree without an install
    SERVER_VERSION = "0.0.0"

_ = protocols  # the package's docstring documents the wire formats


class Request:
    """What a model path needs of an HTTP request."""

    __slots__ = ("body", "cloudevent", "headers", "protocol")

    def __init__(self, body: Any, headers: dict[str, str], protocol: str) -> None:
        self.body = body
        self.headers = headers
        self.protocol = protocol
        self.cloudevent: ce.EventContext | None = None


class InferenceApp:
    """The ASGI app of one model server."""

    def __init__(
        self,
        settings: RuntimeSettings | None = None,
        models: list[Model] | None = None,
    ) -> None:
        self.settings = settings or RuntimeSettings()
        self.metrics = Metrics()
        self.repository = ModelRepository(self.settings, self.metrics)
        for model in models or []:
            self.repository.add_model(model)
        self.logger: PayloadLogger | None = None
        if self.settings.logger_url:
            self.logger = PayloadLogger(
                LoggerConfig(
                    url=self.settings.logger_url,
                    mode=self.settings.logger_mode,
                    inference_service=self.settings.inference_service,
                    namespace=self.settings.namespace,
                    component=self.settings.component,
                )
            )
        self.metrics.add_counters(self._feature_counters)
        self._loading: asyncio.Task[None] | None = None
        # Told the repository's `load_failures` once loading ends with some (`server.run` stops).
        self.on_load_failure: Callable[[list[str]], None] | None = None
        self._get = {
            "/": self._root,
            "/v2": self._server_metadata,
            "/v2/health/live": self._live,
            "/v2/health/ready": self._ready,
            "/v1/models": self._v1_list,
            "/metrics": self._metrics,
            "/v2/repository/index": self._repository_index,
        }

    # ---- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self, wait: bool = False) -> None:
        """Start loading every model (in the background unless `wait`) and the payload logger."""
        if self.logger is not None:
            await self.logger.start()
        self._loading = asyncio.create_task(self._load(), name="load-models")
        if wait:
            await self._loading

    async def _load(self) -> None:
        await self.repository.load_all()
        failures = self.repository.load_failures()
        if failures and self.on_load_failure is not None:
            self.on_load_failure(failures)

    async def wait_loaded(self) -> None:
        if self._loading is not None:
            await self._loading

    async def shutdown(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading
        await self.repository.close()
        if self.logger is not None:
            await self.logger.close()

    # ---- routing --------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        path = scope["path"]
        try:
            if method == "POST":
                route = _model_route(path)
                if route is not None:
                    # The inference path is awaited from here directly: every coroutine level
                    # between the server and the batcher is paid twice per batched request.
                    await self._serve(route[0], route[1], scope, receive, send)
                else:
                    await self._post(path, receive, send)
            elif method in ("GET", "HEAD"):
                handler = self._get.get(path)
                if handler is not None:
                    await handler(send)
                elif path.startswith("/v2/models/"):
                    await self._v2_model_get(path[11:], send)
                elif path.startswith("/v1/models/"):
                    await self._v1_model_status(path[11:], send)
                else:
                    raise ModelNotFound(f"no route for GET {path}")
            else:
                await send_json(send, 405, {"error": f"method {method} is not allowed on {path}"})
        except InferenceError as exc:
            await send_json(send, exc.status, {"error": exc.message})

    async def _post(self, path: str, receive: Receive, send: Send) -> None:
        """The POST routes that are not a model's inference: repository load/unload and index."""
        if path.startswith("/v2/repository/models/"):
            name, _, verb = path[22:].rpartition("/")
            if verb in ("load", "unload") and name:
                await read_body(receive, self.settings.max_body_bytes)
                await (
                    self.repository.load(name) if verb == "load" else self.repository.unload(name)
                )
                if verb == "load" and self.repository.state(name) != READY:
                    self.repository.get(name)  # raises the 503 with the load failure
                await send_json(send, 200, {})
                return
        elif path == "/v2/repository/index":
            await self._repository_index(send)
            return
        raise ModelNotFound(f"no route for POST {path}")

    # ---- the model path -------------------------------------------------------------------

    async def _serve(
        self, name: str, protocol: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        start = time.perf_counter()
        served = self.repository.get(name)  # 404 / 503 before reading the body
        status = 200
        try:
            body = await read_body(receive, self.settings.max_body_bytes)
            headers = _headers(scope)
            request = Request(body, headers, protocol)
            if ce.is_cloudevent(headers):
                request.cloudevent = ce.decode(headers, body)
                request.body = request.cloudevent.data
            result, extra_headers = await self._infer(served, request)
            if request.cloudevent is not None:
                result, extra_headers = ce.encode_reply(
                    request.cloudevent, served.name, (result, extra_headers)
                )
            await send_body(send, 200, result, extra_headers)
        except InferenceError as exc:
            status = exc.status
            await send_json(send, status, {"error": exc.message})
        except (ValueError, TypeError) as exc:
            status = 400
            await send_json(send, 400, {"error": f"model {name} cannot use this input: {exc}"})
        except NotImplementedError as exc:
            status = 501
            await send_json(send, 501, {"error": str(exc) or f"model {name} cannot do this"})
        except Exception as exc:
            status = 500
            log.exception("model %s failed", name)
            await send_json(
                send, 500, {"error": f"model {name} failed: {type(exc).__name__}: {exc}"}
            )
        finally:
            served.metrics.request(protocol, status, time.perf_counter() - start)

    async def _infer(self, served: ServedModel, request: Request) -> tuple[bytes, list[Any]]:
        """Run one request through a model; returns the response body and extra headers."""
        logger = self.logger
        inference_id = ""
        if logger is not None:
            inference_id = _inference_id(request)
            raw = request.body if isinstance(request.body, bytes) else orjson.dumps(request.body)
            logger.log_request(inference_id, served.name, raw, "application/json")
        answer = await self._answer(served, request)
        if logger is not None:  # a cached answer is logged too: the audit trail has every response
            logger.log_response(inference_id, served.name, answer[0], "application/json")
        return answer

    async def _answer(self, served: ServedModel, request: Request) -> tuple[bytes, list[Any]]:
        """The answer from the response cache, or from the model (then cached)."""
        cache_key = None
        if served.cache is not None:
            cache_key, request_id = _cache_key(served, request)
            hit = served.cache.get(cache_key)
            if hit is not None:
                return _with_id(hit, request_id) if request.protocol == "v2" else hit
        if request.protocol == "explain":
            answer: tuple[bytes, list[Any]] = (await self._explain(served, request), [])
        elif served.predictor is not None:
            answer = await (
                self._predictor_v2(served, request)
                if request.protocol == "v2"
                else self._predictor_v1(served, request)
            )
        else:
            answer = await self._custom(served, request)
        if cache_key is not None:
            served.cache.put(cache_key, answer)  # type: ignore[union-attr]
        return answer

    async def _predictor_v1(self, served: ServedModel, request: Request) -> tuple[bytes, list[Any]]:
        m = served.metrics
        t0 = time.perf_counter()
        payload = _parse(request.body, v1.parse_body)
        array = v1.instances_array(payload)
        _check_width(served, [array])
        t1 = time.perf_counter()
        # V1 has one answer per instance: the model's first output.
        first = served.predictor.default_outputs[:1]  # type: ignore[union-attr]
        (predictions,) = await served.predict_arrays([array], first)
        t2 = time.perf_counter()
        body = v1.encode(np.asarray(predictions))
        t3 = time.perf_counter()
        m.preprocess.observe(t1 - t0)
        m.predict.observe(t2 - t1)
        m.postprocess.observe(t3 - t2)
        return body, []

    async def _predictor_v2(self, served: ServedModel, request: Request) -> tuple[bytes, list[Any]]:
        predictor = served.predictor
        assert predictor is not None
        m = served.metrics
        t0 = time.perf_counter()
        infer = _decode_v2(request, served.name)
        arrays = _match_inputs(served, infer.inputs)
        _check_width(served, arrays)
        names = None
        binary_flags: list[bool]
        if infer.outputs:
            known = {o.name for o in predictor.outputs}
            for out in infer.outputs:
                if out.name not in known:
                    raise InvalidInput(
                        f"model {served.name} has no output {out.name!r}; its outputs are "
                        + ", ".join(repr(o.name) for o in predictor.outputs)
                    )
            names = [o.name for o in infer.outputs]
            binary_flags = [o.binary for o in infer.outputs]
        else:
            binary_flags = [infer.binary_output] * len(predictor.default_outputs)
        t1 = time.perf_counter()
        results = await served.predict_arrays(arrays, names)
        t2 = time.perf_counter()
        out_names = names or predictor.default_outputs
        body, header_length = v2.encode_response(
            served.name,
            [
                (n, np.asarray(r), b)
                for n, r, b in zip(out_names, results, binary_flags, strict=True)
            ],
            infer.id,
            served.model.version,
        )
        t3 = time.perf_counter()
        m.preprocess.observe(t1 - t0)
        m.predict.observe(t2 - t1)
        m.postprocess.observe(t3 - t2)
        return body, _binary_headers(header_length)

    async def _custom(self, served: ServedModel, request: Request) -> tuple[bytes, list[Any]]:
        m = served.metrics
        if request.protocol == "v2":
            payload: Any = _decode_v2(request, served.name)
        else:
            payload = _parse(request.body, v1.parse_body)
            if served.batcher is not None and _batchable(payload):
                start = time.perf_counter()
                (predictions,) = await served.predict_instances(payload["instances"])
                m.predict.observe(time.perf_counter() - start)
                return v1.encode_predictions(predictions), []
        headers = request.headers
        t0 = time.perf_counter()
        if served.preprocess is not None:
            payload = await served.preprocess(payload, headers)
        t1 = time.perf_counter()
        result = await served.predict(payload, headers)
        t2 = time.perf_counter()
        if served.postprocess is not None:
            result = await served.postprocess(result, headers)
        t3 = time.perf_counter()
        m.preprocess.observe(t1 - t0)
        m.predict.observe(t2 - t1)
        m.postprocess.observe(t3 - t2)
        if request.protocol == "v2":
            request_id = payload.id if isinstance(payload, v2.InferRequest) else None
            binary = payload.binary_output if isinstance(payload, v2.InferRequest) else False
            return _encode_custom_v2(served.name, result, request_id, binary)
        return v1.encode(result), []

    async def _explain(self, served: ServedModel, request: Request) -> bytes:
        payload = _parse(request.body, v1.parse_body)
        start = time.perf_counter()
        if served.explain is not None:
            result = await served.explain(payload, request.headers)
        elif served.predictor is not None:
            explainer = _tree_explainer(served)
            instances = v1.instances_array(payload)
            result = await served.run_sync(explainer.explain, instances)
        else:
            raise NotImplementedByModel(
                f"model {served.name} has no explainer: define explain() on the model, or deploy an "
                "explainer component"
            )
        served.metrics.explain.observe(time.perf_counter() - start)
        return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)

    # ---- fixed endpoints ------------------------------------------------------------------

    async def _root(self, send: Send) -> None:
        await send_json(send, 200, {"status": "alive"})

    async def _live(self, send: Send) -> None:
        await send_json(send, 200, {"live": True})

    async def _ready(self, send: Send) -> None:
        ready = self.repository.all_ready()
        await send_json(send, 200 if ready else 503, {"ready": ready})

    async def _server_metadata(self, send: Send) -> None:
        await send_json(
            send, 200, {"name": "knserve", "version": SERVER_VERSION, "extensions": _EXTENSIONS}
        )

    async def _v1_list(self, send: Send) -> None:
        await send_json(send, 200, {"models": self.repository.names()})

    async def _v1_model_status(self, name: str, send: Send) -> None:
        served = self.repository.get(name)
        await send_json(send, 200, {"name": served.name, "ready": True})

    async def _v2_model_get(self, rest: str, send: Send) -> None:
        if rest.endswith("/ready"):
            name = _model_name(rest[:-6])
            state = self.repository.state(name)
            ready = state == READY
            await send_json(send, 200 if ready else 503, {"name": name, "ready": ready})
            return
        name = _model_name(rest)
        served = self.repository.get(name)
        model = served.model
        body: dict[str, Any] = {
            "name": served.name,
            "versions": [model.version] if model.version else [],
            "platform": getattr(model, "platform", "knserve-custom"),
            "inputs": [_spec(s) for s in getattr(model, "inputs", [])],
            "outputs": [_spec(s) for s in getattr(model, "outputs", [])],
        }
        await send_json(send, 200, body)

    async def _repository_index(self, send: Send) -> None:
        await send_body(send, 200, orjson.dumps(self.repository.index()), [])

    async def _metrics(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", METRICS_CONTENT_TYPE.encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": self.metrics.render()})

    def _feature_counters(self) -> list[tuple[str, str, dict[str, str], float]]:
        rows: list[tuple[str, str, dict[str, str], float]] = []
        for name in self.repository.names():
            try:
                served = self.repository.get(name)
            except InferenceError:
                continue
            labels = {"model_name": name}
            if served.batcher is not None:
                stats = served.batcher.stats
                rows.append(
                    ("knserve_batches", "model calls made by the batcher", labels, stats.batches)
                )
                rows.append(
                    (
                        "knserve_batched_requests",
                        "requests through the batcher",
                        labels,
                        stats.requests,
                    )
                )
            if served.cache is not None:
                cstats = served.cache.stats
                rows.append(("knserve_cache_hits", "response cache hits", labels, cstats.hits))
                rows.append(
                    ("knserve_cache_misses", "response cache misses", labels, cstats.misses)
                )
        if self.logger is not None:
            lstats = self.logger.stats
            rows.append(("knserve_payload_log_sent", "payload events delivered", {}, lstats.sent))
            rows.append(
                (
                    "knserve_payload_log_dropped",
                    "payload events dropped (queue full, or the sink unreachable)",
                    {},
                    lstats.dropped,
                )
            )
            rows.append(
                ("knserve_payload_log_failed", "payload events the sink refused", {}, lstats.failed)
            )
        return rows


# ---- helpers of the request path (module level: no attribute lookups on self) ---------------


def _model_route(path: str) -> tuple[str, str] | None:
    """(model name, protocol) of an inference path: V2 infer, V1 predict or V1 explain."""
    if path.startswith("/v2/models/"):
        if path.endswith("/infer"):
            return _model_name(path[11:-6]), "v2"
    elif path.startswith("/v1/models/"):
        if path.endswith(":predict"):
            return path[11:-8], "v1"
        if path.endswith(":explain"):
            return path[11:-8], "explain"
    return None


def _model_name(rest: str) -> str:
    name, sep, model_version = rest.partition("/versions/")
    if sep and not model_version:
        raise ModelNotFound("a model version path needs a version: /v2/models/{name}/versions/{v}")
    return name


def _batchable(payload: Any) -> bool:
    """Whether a custom model's V1 request can join a batch, as KServe's batcher takes it: a
    non-empty `instances` list. A request with other fields is predicted alone (KServe's batcher
    would drop them)."""
    instances = payload.get("instances") if isinstance(payload, dict) else None
    return isinstance(instances, list) and bool(instances) and len(payload) == 1


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def _parse(body: Any, parse: Callable[[bytes], dict[str, Any]]) -> dict[str, Any]:
    if isinstance(body, dict):  # CloudEvents hand their data in already parsed
        return body
    if isinstance(body, bytes):
        return parse(body)
    raise InvalidInput("the request data must be a JSON object")


def _decode_v2(request: Request, name: str) -> v2.InferRequest:
    if isinstance(request.body, dict):
        return v2.decode_payload(request.body, name)
    header = request.headers.get("inference-header-content-length")
    if header is not None:
        try:
            length: int | None = int(header)
        except ValueError:
            raise InvalidInput("Inference-Header-Content-Length must be an integer") from None
    else:
        length = None
    return v2.decode_request(request.body, name, length)


def _match_inputs(served: ServedModel, inputs: list[v2.InferInput]) -> list[np.ndarray]:
    specs = served.predictor.inputs  # type: ignore[union-attr]
    if len(specs) == 1 and len(inputs) == 1:
        return [inputs[0].data]  # one input: its name is free (KServe accepts any)
    by_name = {i.name: i.data for i in inputs}
    missing = [s.name for s in specs if s.name not in by_name]
    if missing or len(inputs) != len(specs):
        raise InvalidInput(
            f"model {served.name} takes inputs {', '.join(repr(s.name) for s in specs)}; "
            f"the request has {', '.join(repr(i.name) for i in inputs)}"
        )
    return [by_name[s.name] for s in specs]


def _check_width(served: ServedModel, arrays: list[np.ndarray]) -> None:
    for spec, array in zip(served.predictor.inputs, arrays, strict=False):  # type: ignore[union-attr]
        expected = spec.shape
        if len(expected) >= 2 and expected[-1] > 0:
            width = array.shape[-1] if array.ndim >= 1 else 1
            if array.ndim == 0 or width != expected[-1] or array.ndim > len(expected):
                raise InvalidInput(
                    f"input {spec.name!r} of model {served.name} has shape {list(array.shape)}; "
                    f"the model expects {list(expected)} (-1 is any size)"
                )


def _binary_headers(header_length: int | None) -> list[Any]:
    if header_length is None:
        return []
    return [
        (b"inference-header-content-length", str(header_length).encode()),
        (b"content-type", b"application/octet-stream"),
    ]


def _encode_custom_v2(
    name: str, result: Any, request_id: str | None, binary: bool
) -> tuple[bytes, list[Any]]:
    if isinstance(result, v2.InferResponse):
        outputs = [
            (o.name, o.data, binary or bool(o.parameters.get("binary_data")))
            for o in result.outputs
        ]
        body, length = v2.encode_response(
            result.model_name or name, outputs, result.id or request_id, result.model_version,
            result.parameters,
        )  # fmt: skip
        return body, _binary_headers(length)
    if isinstance(result, dict) and "outputs" in result:
        response = {"model_name": name, **result}
        if request_id is not None:
            response.setdefault("id", request_id)
        return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY), []
    if isinstance(result, dict):
        items = [(k, np.asarray(v), binary) for k, v in result.items()]
    elif (
        isinstance(result, list | tuple)
        and result
        and all(isinstance(r, np.ndarray) for r in result)
    ):
        items = [(f"output-{i}", r, binary) for i, r in enumerate(result)]
    else:
        items = [("output-0", np.asarray(result), binary)]
    body, length = v2.encode_response(name, items, request_id)
    return body, _binary_headers(length)


def _spec(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def _inference_id(request: Request) -> str:
    if request.cloudevent is not None:
        return request.cloudevent.id
    return request.headers.get("x-request-id") or request.headers.get("ce-id") or str(uuid.uuid4())


def _cache_key(served: ServedModel, request: Request) -> tuple[str, Any]:
    """The cache key of a request (its id left out: it is echoed, not predicted) and that id."""
    from knserve.runtime.cache import cache_key

    body = request.body
    if isinstance(body, bytes):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            body = body.decode("latin-1")
    request_id = None
    if isinstance(body, dict):
        request_id = body.get("id")
        body = {k: v for k, v in body.items() if k != "id"}
    return cache_key(served.name, served.model.version, [request.protocol, body]), request_id


def _with_id(answer: tuple[bytes, list[Any]], request_id: Any) -> tuple[bytes, list[Any]]:
    """A cached V2 answer re-stamped with this request's id (JSON header and binary part)."""
    body, headers = answer
    length = next((int(v) for k, v in headers if k == b"inference-header-content-length"), None)
    header, binary = (body, b"") if length is None else (body[:length], body[length:])
    response = orjson.loads(header)
    response.pop("id", None)
    if request_id is not None:
        response["id"] = request_id
    header = orjson.dumps(response)
    if length is None:
        return header, headers
    return header + binary, _binary_headers(len(header))


def _tree_explainer(served: ServedModel) -> Any:
    if served.tree_explainer is None:
        from knserve.runtime.explainers import ExplainerError, TreeShapExplainer, is_tree_model

        native = served.predictor.native  # type: ignore[union-attr]
        if not is_tree_model(native):
            raise NotImplementedByModel(
                f"model {served.name} ({type(native).__name__}) is not a tree ensemble, so it has no "
                "built-in explainer; deploy an explainer component (KernelShap over HTTP)"
            )
        try:
            served.tree_explainer = TreeShapExplainer(native)
        except ExplainerError as exc:
            raise NotImplementedByModel(str(exc)) from None
    return served.tree_explainer


def create_app(
    settings: RuntimeSettings | None = None, models: list[Model] | None = None
) -> InferenceApp:
    """The model server's ASGI app; models load when its lifespan starts."""
    return InferenceApp(settings, models)


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
