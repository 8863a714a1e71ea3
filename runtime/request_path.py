"""The model server's request path, outside the app: how a request is routed and read into what
a model takes, and how a model's results are written back.

- routing: the model and protocol of an inference path (`model_route`);
- reading: `Request`, JSON bodies, V2 requests (JSON or binary), a framework model's inputs
  matched by name and checked against its tensors' widths;
- writing: a custom model's V2 results (`InferResponse`, V2-shaped dicts, arrays);
- the response cache's key (a request's id left out) and a cached V2 answer re-stamped with the
  asking request's id;
- whether a custom model's V1 request can join a batch.

Module-level functions, imported by name into `knserve.runtime.app`: the request path pays no
attribute lookups on an object for them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from knserve.runtime.asgi import Scope
from knserve.runtime.errors import InvalidInput, ModelNotFound, NotImplementedByModel
from knserve.runtime.formats.base import Predictor
from knserve.runtime.protocols import cloudevents as ce
from knserve.runtime.protocols import v2
from knserve.runtime.repository import ServedModel


class Request:
    """What a model path needs of an HTTP request."""

    __slots__ = ("body", "cloudevent", "headers", "protocol")

    def __init__(self, body: Any, headers: dict[str, str], protocol: str) -> None:
        self.body = body
        self.headers = headers
        self.protocol = protocol
        self.cloudevent: ce.EventContext | None = None


def model_route(path: str) -> tuple[str, str] | None:
    """(model name, protocol) of an inference path: V2 infer, V1 predict or V1 explain."""
    if path.startswith("/v2/models/"):
        if path.endswith("/infer"):
            return model_name(path[11:-6]), "v2"
    elif path.startswith("/v1/models/"):
        if path.endswith(":predict"):
            return path[11:-8], "v1"
        if path.endswith(":explain"):
            return path[11:-8], "explain"
    return None


# A UUID's version (4) and variant (RFC 4122) bits, cleared then set in the random 128 bits.
_UUID4_CLEAR = ~(0xF000 << 64 | 0xC000 << 48)
_UUID4_SET = 0x4000 << 64 | 0x8000 << 48


def new_id() -> str:
    """A random UUID4 as text, the id KServe's servers make up for a V2 request without one:
    `new_id()` without building the UUID object (under half its cost per request)."""
    h = f"{int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def model_name(rest: str) -> str:
    name, sep, model_version = rest.partition("/versions/")
    if sep and not model_version:
        raise ModelNotFound("a model version path needs a version: /v2/models/{name}/versions/{v}")
    return name


def batchable(payload: Any) -> bool:
    """Whether a custom model's V1 request can join a batch, as KServe's batcher takes it: a
    non-empty `instances` list. A request with other fields is predicted alone (KServe's batcher
    would drop them)."""
    instances = payload.get("instances") if isinstance(payload, dict) else None
    return isinstance(instances, list) and bool(instances) and len(payload) == 1


def headers_of(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


def parse_json(body: Any, parse: Callable[[bytes], dict[str, Any]]) -> dict[str, Any]:
    if isinstance(body, dict):  # CloudEvents hand their data in already parsed
        return body
    if isinstance(body, bytes):
        return parse(body)
    raise InvalidInput("the request data must be a JSON object")


def decode_v2(request: Request, name: str) -> v2.InferRequest:
    if isinstance(request.body, v2.InferRequest):  # a gRPC request, decoded from protobuf
        return request.body
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


def match_inputs(
    served: ServedModel, predictor: Predictor, inputs: list[v2.InferInput]
) -> list[np.ndarray]:
    specs = predictor.inputs
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


def check_width(served: ServedModel, predictor: Predictor, arrays: list[np.ndarray]) -> None:
    for spec, array in zip(predictor.inputs, arrays, strict=False):
        expected = spec.shape
        if len(expected) >= 2 and expected[-1] > 0:
            width = array.shape[-1] if array.ndim >= 1 else 1
            if array.ndim == 0 or width != expected[-1] or array.ndim > len(expected):
                raise InvalidInput(
                    f"input {spec.name!r} of model {served.name} has shape {list(array.shape)}; "
                    f"the model expects {list(expected)} (-1 is any size)"
                )


def binary_headers(header_length: int | None) -> list[Any]:
    if header_length is None:
        return []
    return [
        (b"inference-header-content-length", str(header_length).encode()),
        (b"content-type", b"application/octet-stream"),
    ]


def encode_custom_v2(
    name: str, result: Any, request_id: str | None, binary: bool
) -> tuple[bytes, list[Any]]:
    if isinstance(result, v2.InferResponse):
        outputs = [
            (o.name, o.data, binary or bool(o.parameters.get("binary_data")))
            for o in result.outputs
        ]
        body, length = v2.encode_response(
            result.model_name or name,
            outputs,
            result.id or request_id,
            result.model_version,
            result.parameters,
        )
        return body, binary_headers(length)
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
    return body, binary_headers(length)


def tensor_spec(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


def inference_id_of(request: Request) -> str:
    if request.cloudevent is not None:
        return request.cloudevent.id
    return request.headers.get("x-request-id") or request.headers.get("ce-id") or new_id()


def cache_key_of(served: ServedModel, request: Request) -> tuple[str, Any]:
    """The cache key of a request (its id left out: it is echoed, not predicted) and that id."""
    from knserve.runtime.cache import cache_key

    body = request.body
    if isinstance(body, bytes):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            body = body.decode("latin-1")
    request_id = None
    if isinstance(body, v2.InferRequest):  # gRPC: its tensors' bytes are what it asks
        request_id, body = body.id, v2_json(body, raw=True)
    elif isinstance(body, dict):
        request_id = body.get("id")
        body = {k: v for k, v in body.items() if k != "id"}
    return cache_key(served.name, served.model.version, [request.protocol, body]), request_id


def v2_json(request: Any, raw: bool = False) -> dict[str, Any]:
    """A decoded V2 request (one that came over gRPC) in V2's JSON form, for the payload logger
    and KServe's own request path; with `raw`, tensors as hex of their bytes (a cache key)."""
    if not isinstance(request, v2.InferRequest):
        raise TypeError(f"{type(request).__name__} is not JSON serialisable")
    inputs = []
    for i in request.inputs:
        data: Any = i.data.tobytes().hex() if raw and i.data.dtype.kind != "O" else i.data
        if isinstance(data, np.ndarray):
            data = v2.json_data(data)
        inputs.append({"name": i.name, "datatype": i.datatype, "shape": i.shape, "data": data})
    body: dict[str, Any] = {"inputs": inputs}
    if request.id is not None and not raw:
        body["id"] = request.id
    if request.parameters:
        body["parameters"] = request.parameters
    if request.outputs:
        body["outputs"] = [{"name": o.name, "parameters": o.parameters} for o in request.outputs]
    return body


def with_id(answer: tuple[bytes, list[Any]], request_id: Any) -> tuple[bytes, list[Any]]:
    """A cached V2 answer re-stamped with this request's id (JSON header and binary part)."""
    body, headers = answer
    length = next((int(v) for k, v in headers if k == b"inference-header-content-length"), None)
    header, binary = (body, b"") if length is None else (body[:length], body[length:])
    response = orjson.loads(header)
    made_up = response.pop("id", None) is not None
    if request_id is not None:
        response["id"] = request_id
    elif made_up:  # the model path made one up for an id-less request: so does each later one
        response["id"] = new_id()
    header = orjson.dumps(response)
    if length is None:
        return header, headers
    return header + binary, binary_headers(len(header))


def tree_explainer(served: ServedModel, predictor: Predictor) -> Any:
    if served.tree_explainer is None:
        from knserve.runtime.explainers import ExplainerError, TreeShapExplainer, is_tree_model

        native = predictor.native
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
