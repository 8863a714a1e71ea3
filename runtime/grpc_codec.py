"""The V2 Open Inference Protocol over gRPC: protobuf messages to and from the model path.

A `ModelInferRequest` becomes the same `v2.InferRequest` a REST request decodes to, so a gRPC
call takes the REST path from there on (batcher, cache, payload logger, metrics). Inputs come
typed (`contents`, one repeated field per datatype family) or raw (`raw_input_contents`, one
little-endian row-major buffer per input; FP16 only so); the checks and their messages are
REST's (`knserve.runtime.protocols.v2`) wherever the two protocols share a rule.

The model path answers in V2's binary form (a JSON header, then one buffer per output), which
maps onto a `ModelInferResponse` without re-encoding a tensor: as KServe's server answers, raw
inputs get `raw_output_contents`, typed inputs get typed `contents` (FP16 outputs always raw).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from knserve.runtime.datatypes import DATATYPES, TO_NUMPY
from knserve.runtime.errors import InvalidInput
from knserve.runtime.grpc_v2 import grpc_predict_v2_pb2 as pb
from knserve.runtime.protocols import v2

# V2 datatype -> the InferTensorContents field that carries it (FP16 has none: raw only).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


def parameters_of(fields: Any) -> dict[str, Any]:
    """A protobuf `map<string, InferParameter>` as plain values (bool, int or str)."""
    out: dict[str, Any] = {}
    for key, param in fields.items():
        choice = param.WhichOneof("parameter_choice")
        if choice is not None:
            out[key] = getattr(param, choice)
    return out


def set_parameters(target: Any, values: dict[str, Any]) -> None:
    """Fill a protobuf parameters map from plain values; other value types go as strings."""
    for key, value in values.items():
        param = target[key]
        if isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            param.int64_param = value
        else:
            param.string_param = value if isinstance(value, str) else orjson.dumps(value).decode()


def decode_infer(request: pb.ModelInferRequest) -> v2.InferRequest:
    """The V2 request a `ModelInferRequest` carries; `InvalidInput` says what is wrong with it.

    Every output is asked for in binary form: that is the form a gRPC response carries."""
    model = request.model_name
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"the request has {len(request.inputs)} inputs but {len(raw)} raw_input_contents "
            f"for model {model}; send one raw content per input, in the inputs' order"
        )
    if not request.inputs:
        raise InvalidInput("a ModelInferRequest needs inputs: a non-empty list of tensors")
    inputs = []
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        if not name:
            raise InvalidInput(f"inputs[{index}] needs a name")
        datatype = tensor.datatype
        if datatype not in TO_NUMPY:
            raise InvalidInput(
                f"input {name!r} has datatype {datatype!r}; it must be one of {', '.join(DATATYPES)}"
            )
        shape = list(tensor.shape)
        if any(d < 0 for d in shape):
            raise InvalidInput(f"input {name!r} has shape {shape}; dimensions must be non-negative")
        if raw:
            if tensor.HasField("contents"):
                raise InvalidInput(
                    f"input {name!r} has contents although the request uses raw_input_contents; "
                    "send every input one way"
                )
            array = _from_raw(name, datatype, shape, raw[index])
        else:
            array = _from_contents(name, datatype, shape, tensor.contents)
        inputs.append(v2.InferInput(name, datatype, shape, array, parameters_of(tensor.parameters)))
    parameters = parameters_of(request.parameters)
    outputs = [
        v2.RequestedOutput(o.name, parameters_of(o.parameters), True) for o in request.outputs
    ]
    return v2.InferRequest(model, inputs, request.id or None, parameters, outputs or None, True)


def _from_raw(name: str, datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    if datatype != "BYTES":
        expected = math.prod(shape) * TO_NUMPY[datatype].itemsize
        if len(raw) != expected:
            raise InvalidInput(
                f"input {name!r} has shape {shape} of {datatype} ({expected} bytes) but its "
                f"raw_input_contents has {len(raw)} bytes"
            )
    # the length-prefixed BYTES layout is the binary tensor extension's
    return v2._from_bytes(name, datatype, shape, raw)


def _from_contents(name: str, datatype: str, shape: list[int], contents: Any) -> np.ndarray:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidInput(
            f"input {name!r} is {datatype}, which gRPC carries in raw_input_contents only"
        )
    values = getattr(contents, field)
    expected = math.prod(shape)
    if len(values) != expected:
        raise InvalidInput(
            f"input {name!r} has shape {shape} ({expected} elements) but {len(values)} data "
            f"elements in contents.{field}"
        )
    target = TO_NUMPY[datatype]
    if datatype == "BYTES":
        array = np.empty(expected, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    if field in ("int_contents", "uint_contents") and target.itemsize < 4 and expected:
        wide = np.asarray(values, dtype=np.int64)
        info = np.iinfo(target)
        if wide.min() < info.min or wide.max() > info.max:
            raise InvalidInput(
                f"input {name!r} is {datatype}, its values must lie in [{info.min}, {info.max}]"
            )
    return np.asarray(values, dtype=target).reshape(shape)


def encode_infer(
    body: bytes, headers: list[Any], raw_outputs: bool, request_id: str | None
) -> pb.ModelInferResponse:
    """The `ModelInferResponse` of the model path's V2 answer (`body` and its headers)."""
    length = next((int(v) for k, v in headers if k == b"inference-header-content-length"), None)
    header = orjson.loads(body if length is None else body[:length])
    blobs = memoryview(body)[length:] if length is not None else memoryview(b"")
    response = pb.ModelInferResponse(
        model_name=header.get("model_name", ""),
        model_version=header.get("model_version") or "",
        id=header.get("id") or request_id or "",
    )
    if header.get("parameters"):
        set_parameters(response.parameters, header["parameters"])
    entries = header.get("outputs", [])
    arrays: list[tuple[Any, bytes | np.ndarray]] = []
    offset = 0
    for entry in entries:
        datatype, shape = entry["datatype"], entry["shape"]
        params = dict(entry.get("parameters") or {})
        size = params.pop("binary_data_size", None)
        out = response.outputs.add(name=entry["name"], datatype=datatype, shape=shape)
        if params:
            set_parameters(out.parameters, params)
        if size is not None:
            arrays.append((out, bytes(blobs[offset : offset + size])))
            offset += size
        else:  # a custom model's JSON outputs
            arrays.append((out, v2.decode_tensor(entry["name"], datatype, shape, entry["data"])))
    raw_outputs = raw_outputs or any(e["datatype"] == "FP16" for e in entries)
    for out, data in arrays:
        if raw_outputs:
            response.raw_output_contents.append(
                data if isinstance(data, bytes) else v2._to_bytes(data)
            )
        else:
            _set_contents(out, data)
    return response


def _set_contents(out: Any, data: bytes | np.ndarray) -> None:
    datatype = out.datatype
    field = getattr(out.contents, CONTENTS_FIELD[datatype])
    if isinstance(data, bytes):
        data = v2._from_bytes(out.name, datatype, list(out.shape), data)
    if datatype == "BYTES":
        field.extend(x if isinstance(x, bytes) else str(x).encode() for x in data.ravel())
    else:
        field.extend(data.ravel().tolist())
