"""A model written against KServe's Python SDK (a `kserve.Model` subclass), served by knserve.

`KServeModel` puts the user's object behind knserve's `Model` interface, so the runtime's
features apply to it unchanged: per-hook offload (a `def` hook runs inline or on a thread, an
`async def` hook on the loop), the batcher, the response cache, the payload logger, metrics.

`answer` is the request path, and it follows KServe 0.21's own server step by step so a file
answers here as it does under `kserve.ModelServer`:

* decoding as KServe's data plane does: V1 bodies are the JSON object (or the raw bytes when the
  content type is not JSON), V2 bodies are KServe's own `InferRequest` (its `from_bytes`, JSON
  or with binary tensors), so `inputs[i].data` is what KServe gives (the request's list;
  `as_numpy()` for an array);
* `Model.__call__`'s order: `preprocess → validate → predict | explain → postprocess`, with one
  headers dict for the whole request (a hook may add keys, as KServe's examples do) and, when the
  model asks for them (`return_response_headers=True`), a `response_headers` dict returned to
  the client;
* encoding as KServe's endpoints do: KServe's `InferResponse.to_rest()` (the binary extension
  when it says so), a V2 dict in the shape of KServe's `InferenceResponse` model (every field,
  None included), a V1 result serialised as KServe's `ORJSONResponse` does (bytes and str as
  they are).

Hooks the class leaves to `kserve.Model` are skipped where KServe's are identities
(`preprocess`, `postprocess`); `predict` left to KServe forwards to `--predictor_host`, which
knserve does itself (`knserve.runtime.kserve_forward`).
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

import orjson

from knserve.runtime.errors import InferenceError, InvalidInput, ModelNotReady
from knserve.runtime.model import DuckTypedModel
from knserve.runtime.protocols import v1
from knserve.runtime.repository import ServedModel
from knserve.runtime.request_path import Request, batchable

# KServe's data plane parses a V1 body as JSON unless its content type is none of these.
_JSON_TYPES = frozenset(
    {
        "application/json",
        "application/cloudevents+json",
        "application/ld+json",
        "application/octet-stream",
    }
)
_ORJSON_RESPONSE = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
# The predictor's (or model's) response headers KServe drops or the server sets itself.
_NOT_FORWARDED = frozenset({"content-length", "transfer-encoding", "connection", "date", "server"})


class KServeModel(DuckTypedModel):
    """A `kserve.Model` instance served by knserve's runtime."""

    def __init__(self, inner: Any, predict: Any = None) -> None:
        """`predict`: the forwarding predict for a transformer (used when the class has none)."""
        import kserve
        from kserve import context

        super().__init__(inner.name, inner)
        self.platform = "kserve-sdk"
        cls = type(inner)
        # KServe's preprocess/postprocess are identities: not overridden, they are skipped.
        for hook in ("preprocess", "postprocess"):
            if getattr(cls, hook) is getattr(kserve.Model, hook):
                del self.__dict__[hook]
        if cls.predict is kserve.Model.predict and predict is not None:
            self.predict = predict  # type: ignore[method-assign]
        # explain stays the model's: KServe's default answers 501 without an explainer host.
        self.response_headers = bool(getattr(inner, "required_response_headers", False))
        config = context.get_predictor_config()
        for hook in ("preprocess", "predict", "postprocess", "explain"):
            fn = self.__dict__.get(hook)
            if fn is not None and not inspect.iscoroutinefunction(fn):
                self.__dict__[hook] = _with_predictor_config(fn, config)

    def load(self) -> bool:
        # KServe's ModelServer never calls load(): the file did, before start([...]).
        return bool(self.inner.ready)

    def unload(self) -> None:
        self.inner.stop()  # KServe's teardown hook


def _with_predictor_config(fn: Callable[..., Any], config: Any) -> Callable[..., Any]:
    """`fn` seeing KServe's `PredictorConfig` (`self.predictor_config`) on any thread.

    KServe keeps it in a context variable, set where `ModelServer()` ran; KServe calls a `def`
    hook on its event loop, which shares that context, but knserve may run one on a worker
    thread, whose context is its own.
    """
    from kserve import context

    def call(*args: Any) -> Any:
        if context.get_predictor_config() is not config:
            context.set_predictor_config(config)
        return fn(*args)

    return call


async def answer(served: ServedModel, request: Request) -> tuple[bytes, list[Any]]:
    """One request through a `KServeModel`, as KServe's server runs it (module docstring)."""
    from kserve import errors

    try:
        return await _answer(served, request)
    except errors.ModelNotReady as exc:
        raise ModelNotReady(str(exc)) from None
    except errors.InvalidInput as exc:
        raise InvalidInput(str(exc)) from None


async def _answer(served: ServedModel, request: Request) -> tuple[bytes, list[Any]]:
    model = served.model
    assert isinstance(model, KServeModel)
    m = served.metrics
    headers = dict(request.headers)  # hooks may add to it; the request's own stays as it came
    t0 = time.perf_counter()
    payload = decode(request, served.name)
    if served.batcher is not None and request.protocol == "v1" and batchable(payload):
        (predictions,) = await served.predict_instances(payload["instances"])
        m.predict.observe(time.perf_counter() - t0)
        return v1.encode_predictions(predictions), []
    response_headers: dict[str, str] = {}
    extra: tuple[Any, ...] = (response_headers,) if model.response_headers else ()
    if served.preprocess is not None:
        payload = await served.preprocess(payload, headers)
    payload = model.inner.validate(payload)
    t1 = time.perf_counter()
    if request.protocol == "explain":
        assert served.explain is not None
        result = await served.explain(payload, headers)
    else:
        result = await served.predict(payload, headers, *extra)
    t2 = time.perf_counter()
    if served.postprocess is not None:
        result = await served.postprocess(result, headers, *extra)
    t3 = time.perf_counter()
    m.preprocess.observe(t1 - t0)
    (m.explain if request.protocol == "explain" else m.predict).observe(t2 - t1)
    m.postprocess.observe(t3 - t2)
    return encode(result, request.protocol, response_headers)


def decode(request: Request, name: str) -> Any:
    """The request body as KServe's data plane hands it to `preprocess`."""
    body = request.body
    if request.protocol == "v2":
        from kserve import InferRequest

        if isinstance(body, dict):  # a CloudEvent's data, parsed already
            body = orjson.dumps(body)
        header = request.headers.get("inference-header-content-length")
        try:
            decoded = InferRequest.from_bytes(body, int(header or len(body)), name)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"invalid V2 request: {type(exc).__name__}: {exc}") from None
        if header is None:
            # KServe reads a JSON body through its pydantic InferenceRequest model, which gives
            # every tensor a parameters dict; orjson plus KServe's from_bytes is the same
            # request at a fraction of the cost, once that is done too.
            for tensor in [*decoded.inputs, *(decoded.request_outputs or [])]:
                if tensor.parameters is None:
                    tensor.parameters = {}
        return decoded
    if not isinstance(body, bytes):
        return body
    content_type = request.headers.get("content-type")
    if content_type is not None and content_type not in _JSON_TYPES:
        return body  # KServe hands a model a body it cannot read as JSON untouched
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"Unrecognized request format: {exc}") from None


def encode(result: Any, protocol: str, response_headers: dict[str, str]) -> tuple[bytes, list[Any]]:
    """A hook's result as KServe's endpoints send it: the body and the extra headers."""
    from kserve import InferResponse

    headers = [
        (k.lower().encode("latin-1"), str(v).encode("latin-1"))
        for k, v in response_headers.items()
        if k.lower() not in _NOT_FORWARDED
    ]
    if isinstance(result, InferResponse):
        result, json_length = result.to_rest()
        if json_length is not None:
            headers = [h for h in headers if h[0] != b"content-type"]
            headers += [
                (b"inference-header-content-length", str(json_length).encode()),
                (b"content-type", b"application/octet-stream"),
            ]
    if isinstance(result, bytes):
        return result, headers
    if isinstance(result, str):
        return result.encode(), headers
    if protocol == "v2":
        result = _v2_response(result)
    return orjson.dumps(result, option=_ORJSON_RESPONSE), headers


_RESPONSE_KEYS = frozenset({"id", "model_name", "model_version", "parameters", "outputs"})
_OUTPUT_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})


def _v2_response(result: Any) -> Any:
    """A V2 answer as KServe's `InferenceResponse` model dumps it (every field, None included).

    What `InferResponse.to_rest()` makes is rewritten directly; anything else goes through
    KServe's pydantic model, which also refuses what is not a V2 response.
    """
    if isinstance(result, dict) and result.keys() <= _RESPONSE_KEYS:
        outputs = result.get("outputs")
        if (
            isinstance(result.get("id"), str)
            and isinstance(result.get("model_name"), str)
            and isinstance(result.get("model_version"), str | None)
            and isinstance(outputs, list)
            and all(_plain_output(o) for o in outputs)
        ):
            return {
                "model_name": result["model_name"],
                "model_version": result.get("model_version"),
                "id": result["id"],
                "parameters": result.get("parameters"),
                "outputs": [
                    {
                        "name": o["name"],
                        "shape": o["shape"],
                        "datatype": o["datatype"],
                        "parameters": o.get("parameters"),
                        "data": o["data"],
                    }
                    for o in outputs
                ],
            }
    from kserve.protocol.rest.v2_datamodels import InferenceResponse
    from pydantic import ValidationError

    try:
        return InferenceResponse.model_validate(result).model_dump(mode="json")
    except ValidationError as exc:
        raise InferenceError(
            f"the model's answer is not a V2 inference response: {_first_error(exc)}"
        ) from None


def _plain_output(output: Any) -> bool:
    return (
        isinstance(output, dict)
        and output.keys() <= _OUTPUT_KEYS
        and isinstance(output.get("name"), str)
        and isinstance(output.get("datatype"), str)
        and isinstance(output.get("data"), list)
        and isinstance(output.get("shape"), list)
        and all(type(d) is int for d in output["shape"])
        and isinstance(output.get("parameters"), dict | None)
    )


def _first_error(exc: Any) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    return f"{where}: {first.get('msg')}" if where else str(first.get("msg"))
