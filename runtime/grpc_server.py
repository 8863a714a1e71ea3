"""The model server's gRPC endpoint: the Open Inference Protocol's `GRPCInferenceService`.

Every RPC of KServe's `grpc_predict_v2.proto` (ServerLive, ServerReady, ModelReady,
ServerMetadata, ModelMetadata, ModelInfer, RepositoryModelLoad/Unload), plus Triton's
RepositoryIndex, and `grpc.health.v1` for probes, on one `grpc.aio` server in the REST server's
event loop. A ModelInfer call is one request through the REST app's model path
(`InferenceApp._infer`: cache, batcher, payload logger) and is counted in its metrics under
protocol `grpc`.

Errors carry gRPC status codes as KServe's ExceptionToStatusInterceptor maps them, with the
messages REST sends: a bad request is INVALID_ARGUMENT, an unknown model NOT_FOUND, a model not
ready UNAVAILABLE, a verb the model lacks UNIMPLEMENTED, anything else INTERNAL.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import grpc
import orjson
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from knserve.runtime.errors import InferenceError
from knserve.runtime.grpc_codec import decode_infer, encode_infer
from knserve.runtime.grpc_v2 import grpc_predict_v2_pb2 as pb
from knserve.runtime.grpc_v2 import grpc_predict_v2_pb2_grpc as pb_grpc
from knserve.runtime.grpc_v2 import repository_index_pb2 as index_pb
from knserve.runtime.kserve_model import KServeModel
from knserve.runtime.repository import READY
from knserve.runtime.request_path import Request, tensor_spec, v2_json

if TYPE_CHECKING:
    from knserve.runtime.app import InferenceApp

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"

# The HTTP status of an InferenceError -> its gRPC code (KServe's interceptor, errors.py).
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_of(exc: BaseException, model: str) -> tuple[grpc.StatusCode, str, int]:
    """The gRPC code, message and HTTP-equivalent status (for the metrics) of a failed call."""
    if isinstance(exc, InferenceError):
        return _CODES.get(exc.status, grpc.StatusCode.INTERNAL), exc.message, exc.status
    if isinstance(exc, ValueError | TypeError):
        return grpc.StatusCode.INVALID_ARGUMENT, f"model {model} cannot use this input: {exc}", 400
    if isinstance(exc, NotImplementedError):
        return grpc.StatusCode.UNIMPLEMENTED, str(exc) or f"model {model} cannot do this", 501
    return grpc.StatusCode.INTERNAL, f"model {model} failed: {type(exc).__name__}: {exc}", 500


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """`GRPCInferenceService` over one `InferenceApp`'s repository and model path."""

    def __init__(self, app: InferenceApp) -> None:
        self.app = app

    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.app.repository.all_ready())

    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:
        try:
            state = self.app.repository.state(request.name)
        except InferenceError as exc:
            await _abort(context, exc, request.name)
        return pb.ModelReadyResponse(ready=state == READY)

    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        from knserve.runtime.app import EXTENSIONS, SERVER_VERSION

        return pb.ServerMetadataResponse(
            name="knserve", version=SERVER_VERSION, extensions=EXTENSIONS
        )

    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:
        try:
            served = self.app.repository.get(request.name)
        except InferenceError as exc:
            await _abort(context, exc, request.name)
        model = served.model
        tensors = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=served.name,
            versions=[model.version] if model.version else [],
            platform=getattr(model, "platform", "knserve-custom"),
            inputs=[tensors(**tensor_spec(s)) for s in getattr(model, "inputs", [])],
            outputs=[tensors(**tensor_spec(s)) for s in getattr(model, "outputs", [])],
        )

    async def ModelInfer(self, request: Any, context: Any) -> pb.ModelInferResponse:
        start = time.perf_counter()
        name = request.model_name
        served = None
        status = 200
        try:
            served = self.app.repository.get(name)
            infer = decode_infer(request)
            headers = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            body: Any = infer
            if isinstance(served.model, KServeModel):  # KServe's own path reads REST bytes
                infer.parameters["binary_data_output"] = True
                body = orjson.dumps(v2_json(infer), option=orjson.OPT_SERIALIZE_NUMPY)
            answer, answer_headers = await self.app._infer(served, Request(body, headers, "v2"))
            return encode_infer(answer, answer_headers, bool(request.raw_input_contents), infer.id)
        except Exception as exc:
            code, message, status = status_of(exc, name)
            if status == 500:
                log.exception("model %s failed", name)
            await context.abort(code, message)
            raise  # unreachable: abort raises
        finally:
            if served is not None:
                served.metrics.request("grpc", status, time.perf_counter() - start)

    async def RepositoryModelLoad(
        self, request: Any, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        name = request.model_name
        try:
            await self.app.repository.load(name)
            if self.app.repository.state(name) != READY:
                self.app.repository.get(name)  # raises UNAVAILABLE with the load failure
        except InferenceError as exc:
            await _abort(context, exc, name)
        return pb.RepositoryModelLoadResponse(model_name=name, isLoaded=True)

    async def RepositoryModelUnload(
        self, request: Any, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        name = request.model_name
        try:
            await self.app.repository.unload(name)
        except InferenceError as exc:
            await _abort(context, exc, name)
        return pb.RepositoryModelUnloadResponse(model_name=name, isUnloaded=True)

    async def RepositoryIndex(
        self, request: index_pb.RepositoryIndexRequest, context: Any
    ) -> index_pb.RepositoryIndexResponse:
        entries = self.app.repository.index()
        if request.ready:
            entries = [e for e in entries if e["state"] == READY]
        return index_pb.RepositoryIndexResponse(
            models=[index_pb.RepositoryIndexResponse.ModelIndex(**e) for e in entries]
        )


async def _abort(context: Any, exc: BaseException, model: str) -> Any:
    code, message, _ = status_of(exc, model)
    await context.abort(code, message)


def _repository_request(data: bytes) -> Any:
    """A load/unload request in KServe's shape (model_name is field 1) or Triton's (field 2)."""
    triton = index_pb.TritonRepositoryModelRequest.FromString(data)
    if triton.model_name:
        return pb.RepositoryModelLoadRequest(model_name=triton.model_name)
    return pb.RepositoryModelLoadRequest.FromString(data)


class _Collected:
    """Stands in for a server to take the generated code's method handlers (`add_…_to_server`)."""

    def __init__(self) -> None:
        self.methods: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same table comes as registered methods too

    def add_registered_method_handlers(self, service: str, methods: Any) -> None:
        self.methods.update(methods)


def method_handlers(servicer: InferenceServicer) -> dict[str, grpc.RpcMethodHandler]:
    """Every RPC of the service: the generated handlers, plus Triton's RepositoryIndex, and
    load/unload reading either client's request shape. One table, so that grpc's registered
    methods (which win over any generic handler) are these."""
    collected = _Collected()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, collected)
    return {
        **collected.methods,
        "RepositoryIndex": grpc.unary_unary_rpc_method_handler(
            servicer.RepositoryIndex,
            request_deserializer=index_pb.RepositoryIndexRequest.FromString,
            response_serializer=index_pb.RepositoryIndexResponse.SerializeToString,
        ),
        "RepositoryModelLoad": grpc.unary_unary_rpc_method_handler(
            servicer.RepositoryModelLoad,
            request_deserializer=_repository_request,
            response_serializer=pb.RepositoryModelLoadResponse.SerializeToString,
        ),
        "RepositoryModelUnload": grpc.unary_unary_rpc_method_handler(
            servicer.RepositoryModelUnload,
            request_deserializer=_repository_request,
            response_serializer=pb.RepositoryModelUnloadResponse.SerializeToString,
        ),
    }


class GRPCServer:
    """The gRPC server of one `InferenceApp`, started and stopped with it."""

    def __init__(self, app: InferenceApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._server: aio.Server | None = None
        self.health = health.aio.HealthServicer()

    async def start(self) -> int:
        """Bind and serve; returns the port (the kernel's pick when `port` is 0)."""
        max_bytes = self.app.settings.max_body_bytes
        server = aio.server(
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                ("grpc.so_reuseport", 0),  # a taken port is an error, not a shared listener
            ]
        )
        servicer = InferenceServicer(self.app)
        methods = method_handlers(servicer)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))
        server.add_registered_method_handlers(SERVICE, methods)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        host = f"[{self.host}]" if ":" in self.host else self.host
        bound = server.add_insecure_port(f"{host}:{self.port}")
        if bound == 0:
            raise OSError(f"cannot serve gRPC on {self.host}:{self.port}: the port is taken")
        await server.start()
        self._server = server
        self.port = bound
        await self.set_serving()
        return bound

    async def set_serving(self) -> None:
        """grpc.health.v1: SERVING (the server and every model) once all models are ready."""
        ready = self.app.repository.all_ready()
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if ready
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        await self.health.set("", status)
        await self.health.set(SERVICE, status)

    async def stop(self, grace: float = 5.0) -> None:
        if self._server is not None:
            await self.health.enter_graceful_shutdown()
            await self._server.stop(grace)
            self._server = None
