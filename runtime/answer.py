"""How a served model answers one request, once the app has found the model.

Framework models (`PredictorModel`) take the fast path: the request is decoded straight into the
predictor's arrays, V1 (`instances`, the first output) or V2 (named tensors, binary or JSON).
KServe's named-column requests (V1 instances that are objects, V2 `content_type: pd`) are read
into a pandas DataFrame for the tabular formats instead, and predicted outside the batcher.
Custom models run their `preprocess → predict → postprocess` hooks; with the batcher on, their V1
`instances` join a batch. `:explain` asks the model's own `explain`, or a framework tree model's
built-in explainer. Each path times its steps into the model's metrics.

`answer_of` puts the response cache in front: a hit is the earlier answer (with this request's
id for V2), a miss is computed and cached.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any

import numpy as np
import orjson

from knserve.runtime.errors import InvalidInput, NotImplementedByModel
from knserve.runtime.formats.base import FramePredictor, Predictor
from knserve.runtime.kserve_model import KServeModel
from knserve.runtime.kserve_model import answer as kserve_answer
from knserve.runtime.protocols import v1, v2
from knserve.runtime.protocols.dataframe import is_named, v1_frame
from knserve.runtime.repository import ServedModel
from knserve.runtime.request_path import (
    Request,
    batchable,
    binary_headers,
    cache_key_of,
    check_width,
    decode_v2,
    encode_custom_v2,
    match_inputs,
    new_id,
    parse_json,
    tree_explainer,
    with_id,
)


async def answer_of(served: ServedModel, request: Request) -> tuple[bytes, list[Any]]:
    """The answer from the response cache, or from the model (then cached)."""
    cache = served.cache
    if cache is None:
        return await from_model(served, request)
    cache_key, request_id = cache_key_of(served, request)
    hit = cache.get(cache_key)
    if hit is not None:
        return with_id(hit, request_id) if request.protocol == "v2" else hit
    answer = await from_model(served, request)
    cache.put(cache_key, answer)
    return answer


def from_model(served: ServedModel, request: Request) -> Awaitable[tuple[bytes, list[Any]]]:
    """The model's answer: the coroutine of the path that computes it, returned rather than
    awaited here, so a request suspends through one coroutine level less."""
    if served.predictor is None and isinstance(served.model, KServeModel):
        return kserve_answer(served, request)  # KServe's own request path, explain included
    if request.protocol == "explain":
        return _explained(served, request)
    if served.predictor is None:
        return _custom(served, request)
    if request.protocol == "v2":
        return _predictor_v2(served, served.predictor, request)
    return _predictor_v1(served, served.predictor, request)


async def _predictor_v1(
    served: ServedModel, predictor: Predictor, request: Request
) -> tuple[bytes, list[Any]]:
    m = served.metrics
    t0 = time.perf_counter()
    payload = parse_json(request.body, v1.parse_body)
    instances = v1.instances_of(payload)
    # V1 has one answer per instance: the model's first output.
    first = predictor.default_outputs[:1]
    if is_named(instances):
        table = frame_predictor(served, predictor)
        frame = v1_frame(instances)
        t1 = time.perf_counter()
        # a table is predicted alone: the batcher stacks arrays, and its columns may be of any type
        (predictions,) = await served.run_sync(table.predict_frame, frame, first)
    elif all(isinstance(i, str) for i in instances):
        # KServe's tabular servers hand strings to the model as a list (get_predict_input)
        table = frame_predictor(served, predictor)
        t1 = time.perf_counter()
        (predictions,) = await served.run_sync(table.predict_objects, instances, first)
    else:
        array = v1.rows_array(instances)
        check_width(served, predictor, [array])
        t1 = time.perf_counter()
        (predictions,) = await served.predict_arrays([array], first)
    t2 = time.perf_counter()
    body = v1.encode(np.asarray(predictions))
    t3 = time.perf_counter()
    m.preprocess.observe(t1 - t0)
    m.predict.observe(t2 - t1)
    m.postprocess.observe(t3 - t2)
    if served.tracer is not None:
        served.record_steps(t0, t1, t2, t3)
    return body, []


async def _predictor_v2(
    served: ServedModel, predictor: Predictor, request: Request
) -> tuple[bytes, list[Any]]:
    m = served.metrics
    t0 = time.perf_counter()
    infer = decode_v2(request, served.name)
    table: Any = None  # what the model takes as is, when it is no tensor
    if infer.content_type == "pd":
        table = frame_predictor(served, predictor).predict_frame, infer.as_dataframe()
    elif (
        len(infer.inputs) == 1
        and infer.inputs[0].datatype == "BYTES"
        and isinstance(predictor, FramePredictor)
    ):
        # KServe's tabular servers hand a BYTES input to the model as a list of str
        table = predictor.predict_objects, infer.inputs[0].column()
    else:
        arrays = match_inputs(served, predictor, infer.inputs)
        check_width(served, predictor, arrays)
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
    if table is None:
        results = await served.predict_arrays(arrays, names)
    else:
        results = await served.run_sync(*table, names)
    t2 = time.perf_counter()
    out_names = names or predictor.default_outputs
    body, header_length = v2.encode_response(
        served.name,
        [(n, np.asarray(r), b) for n, r, b in zip(out_names, results, binary_flags, strict=True)],
        # KServe's servers echo the request's id or make one up (utils.py, get_predict_response)
        infer.id or new_id(),
        served.model.version,
    )
    t3 = time.perf_counter()
    m.preprocess.observe(t1 - t0)
    m.predict.observe(t2 - t1)
    m.postprocess.observe(t3 - t2)
    if served.tracer is not None:
        served.record_steps(t0, t1, t2, t3)
    return body, binary_headers(header_length)


def frame_predictor(served: ServedModel, predictor: Predictor) -> FramePredictor:
    """The predictor as one that takes tables, or a 400 saying what this model takes instead."""
    if not isinstance(predictor, FramePredictor):
        raise InvalidInput(
            f"model {served.name} ({predictor.format}) takes tensors, not named columns: send "
            'rows of numbers (V1) or tensors without parameters.content_type "pd" (V2)'
        )
    return predictor


async def _custom(served: ServedModel, request: Request) -> tuple[bytes, list[Any]]:
    m = served.metrics
    if request.protocol == "v2":
        payload: Any = decode_v2(request, served.name)
    else:
        payload = parse_json(request.body, v1.parse_body)
        if served.batcher is not None and batchable(payload):
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
        return encode_custom_v2(served.name, result, request_id, binary)
    return v1.encode(result), []


async def _explained(served: ServedModel, request: Request) -> tuple[bytes, list[Any]]:
    return await _explain(served, request), []


async def _explain(served: ServedModel, request: Request) -> bytes:
    payload = parse_json(request.body, v1.parse_body)
    start = time.perf_counter()
    if served.explain is not None:
        result = await served.explain(payload, request.headers)
    elif served.predictor is not None:
        explainer = tree_explainer(served, served.predictor)
        instances = v1.instances_array(payload)
        result = await served.run_sync(explainer.explain, instances)
    else:
        raise NotImplementedByModel(
            f"model {served.name} has no explainer: define explain() on the model, or deploy an "
            "explainer component"
        )
    served.metrics.explain.observe(time.perf_counter() - start)
    return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
