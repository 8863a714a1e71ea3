"""The model server's ASGI application.

A bare ASGI callable rather than a framework: the V2 goal (80 % of a bare uvicorn app calling the
same predict) leaves no room for a middleware stack, per-request objects or a router that tries
patterns in turn. Routing is a dict lookup for fixed paths and a prefix split for model paths;
bodies are parsed with orjson and outputs serialised from NumPy directly
(`knserve.runtime.request_path` holds the reading and writing).

How a model answers — a framework model's fast path, a custom model's hooks (batched: KServe's
batcher does this for any predictor), an explanation, the response cache — is
`knserve.runtime.answer`. Either way a request for a model is one `_serve` call, the single place
where a model is called, timed, counted and logged.

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
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson

from knserve.runtime import protocols
from knserve.runtime.answer import answer_of
from knserve.runtime.asgi import Receive, Scope, Send, read_body, send_body, send_json
from knserve.runtime.errors import InferenceError, ModelNotFound
from knserve.runtime.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from knserve.runtime.metrics import Metrics
from knserve.runtime.model import Model
from knserve.runtime.payload_logger import LoggerConfig, PayloadLogger
from knserve.runtime.propagation import enter
from knserve.runtime.protocols import cloudevents as ce
from knserve.runtime.repository import READY, ModelRepository, ServedModel
from knserve.runtime.request_path import (
    Request,
    headers_of,
    inference_id_of,
    model_name,
    model_route,
    tensor_spec,
    v2_json,
)
from knserve.runtime.settings import RuntimeSettings
from knserve.runtime.tracing import perf_ns, runtime_service, tracer

log = logging.getLogger(__name__)

EXTENSIONS = ["model_repository", "binary_tensor_data", "cloudevents", "metrics"]

try:
    SERVER_VERSION = version("knserve")
except PackageNotFoundError:  # running from a source tree without an install
    SERVER_VERSION = "0.0.0"

_ = protocols  # the package's docstring documents the wire formats


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
        self.tracer = tracer(runtime_service())  # None unless OTEL_* variables ask for traces
        self._loading: asyncio.Task[None] | None = None
        self.grpc: Any = None  # knserve.runtime.grpc_server.GRPCServer when settings.grpc_port
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
        """Start loading every model (in the background unless `wait`) and the payload logger.

        A server given its models, and a multi-model server (a model config, as KServe's agent
        loads its ConfigMap's models before the pod serves), load before they listen: whatever
        probe the runtime declares (a stock runtime declares none, so Knative's is a TCP
        connect), a replica takes traffic only once it holds its models."""
        if self.logger is not None:
            await self.logger.start()
        if self.settings.grpc_port is not None:
            from knserve.runtime.grpc_server import GRPCServer

            self.grpc = GRPCServer(self, self.settings.host, self.settings.grpc_port)
        self._loading = asyncio.create_task(self._load(), name="load-models")
        # A server given its model (KServe's `--model_dir`, or Model objects) loads it before it
        # listens, as KServe's servers call load() before start(): a stock runtime declares no
        # readiness probe, so Knative's TCP probe would otherwise pass before the model loaded.
        # Only a --model-repository server listens at once (503 per model until it loads).
        if wait or self.settings.model_config or not self.settings.model_repository:
            await self._loading
            if not self.settings.model_repository and self.repository.load_failures():
                # never listen: the lifespan fails, and the server exits with the reason
                raise RuntimeError("; ".join(self.repository.load_failures()))
        if self.grpc is not None:
            # after the load, as REST: a grpc-v2 predictor's probe is a TCP connect to this port
            port = await self.grpc.start()
            print(f"knserve.runtime serving gRPC on {self.settings.host}:{port}", flush=True)

    async def _load(self) -> None:
        await self.repository.load_all()
        if self.grpc is not None:
            await self.grpc.set_serving()
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
        if self.grpc is not None:
            await self.grpc.stop()
        await self.repository.close()
        if self.logger is not None:
            await self.logger.close()
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.flush)

    # ---- routing --------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        path = scope["path"]
        try:
            if method == "POST":
                route = model_route(path)
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
        span: Any = None
        try:
            body = await read_body(receive, self.settings.max_body_bytes)
            headers = headers_of(scope)
            inbound = enter(headers, served.name)
            if self.tracer is not None:
                span, inbound.span = self.tracer.start(
                    f"{protocol} {name}",
                    inbound.context,
                    kind="server",
                    start_ns=perf_ns(start),
                    attributes={"knserve.model": name, "url.path": scope["path"]},
                )
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
            if span is not None:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    self.tracer.fail(span, f"status {status}")  # type: ignore[union-attr]
                span.end()

    async def _infer(self, served: ServedModel, request: Request) -> tuple[bytes, list[Any]]:
        """Run one request through a model; returns the response body and extra headers."""
        logger = self.logger
        inference_id = ""
        if logger is not None:
            inference_id = inference_id_of(request)
            body = request.body
            raw = body if isinstance(body, bytes) else orjson.dumps(body, default=v2_json)
            logger.log_request(inference_id, served.name, raw, "application/json")
        answer = await answer_of(served, request)
        if logger is not None:  # a cached answer is logged too: the audit trail has every response
            logger.log_response(inference_id, served.name, answer[0], "application/json")
        return answer

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
            send, 200, {"name": "knserve", "version": SERVER_VERSION, "extensions": EXTENSIONS}
        )

    async def _v1_list(self, send: Send) -> None:
        await send_json(send, 200, {"models": self.repository.names()})

    async def _v1_model_status(self, name: str, send: Send) -> None:
        served = self.repository.get(name)
        await send_json(send, 200, {"name": served.name, "ready": True})

    async def _v2_model_get(self, rest: str, send: Send) -> None:
        if rest.endswith("/ready"):
            name = model_name(rest[:-6])
            state = self.repository.state(name)
            ready = state == READY
            await send_json(send, 200 if ready else 503, {"name": name, "ready": ready})
            return
        name = model_name(rest)
        served = self.repository.get(name)
        model = served.model
        body: dict[str, Any] = {
            "name": served.name,
            "versions": [model.version] if model.version else [],
            "platform": getattr(model, "platform", "knserve-custom"),
            "inputs": [tensor_spec(s) for s in getattr(model, "inputs", [])],
            "outputs": [tensor_spec(s) for s in getattr(model, "outputs", [])],
        }
        await send_json(send, 200, body)

    async def _repository_index(self, send: Send) -> None:
        await send_body(send, 200, orjson.dumps(self.repository.index()), [])

    async def _metrics(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", METRICS_CONTENT_TYPE.encode())],
            }
        )
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
                for metric, doc, value in (
                    ("knserve_batches", "model calls made by the batcher", stats.batches),
                    ("knserve_batched_requests", "requests through the batcher", stats.requests),
                ):
                    rows.append((metric, doc, labels, value))
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


def create_app(
    settings: RuntimeSettings | None = None, models: list[Model] | None = None
) -> InferenceApp:
    """The model server's ASGI app; models load when its lifespan starts."""
    return InferenceApp(settings, models)


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")
