"""The V2 Open Inference Protocol over REST: request decoding and response encoding.

A request is JSON — or, with Triton's binary tensor data extension, a JSON header of
`Inference-Header-Content-Length` bytes followed by raw tensor bytes. Every input is decoded to a
NumPy array of its datatype and shape; the checks (datatype known, shape non-negative, element
count equal to the shape's product, values of the declared type) raise `InvalidInput` with the
input named, so a client learns what to fix.

Responses carry outputs as JSON data, or as raw bytes when the request asked for binary outputs
(`parameters.binary_data_output`, or `binary_data` on a requested output), as Triton's HTTP
client does by default.
"""

from __future__ import annotations

import math
from typing import Any, TypeGuard

import numpy as np
import orjson

from knserve.runtime.datatypes import DATATYPES, TO_NUMPY, datatype_of
from knserve.runtime.errors import InvalidInput

_JSON_NATIVE = frozenset("biuf")  # NumPy kinds orjson serialises directly


class InferInput:
    """One decoded input tensor."""

    __slots__ = ("data", "datatype", "json", "name", "parameters", "shape")

    def __init__(
        self,
        name: str,
        datatype: str,
        shape: list[int],
        data: np.ndarray,
        parameters: dict[str, Any] | None = None,
        json: Any = None,
    ) -> None:
        self.name = name
        self.datatype = datatype
        self.shape = shape
        self.data = data
        self.parameters = parameters or {}
        # the request's JSON `data` as sent (None for binary data): a "pd" column is built from it
        self.json = json

    def as_numpy(self) -> np.ndarray:
        return self.data

    def column(self) -> list[Any] | np.ndarray:
        """The input's values as one table column: the JSON values as sent (so pandas infers
        their type as KServe's does), else the decoded array; BYTES as str."""
        values: list[Any] | np.ndarray
        if self.json is not None:
            values = _flatten(self.json) if isinstance(self.json, list) else [self.json]
        else:
            values = self.data.ravel()
        if self.datatype == "BYTES":
            return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
        return values


class RequestedOutput:
    __slots__ = ("binary", "name", "parameters")

    def __init__(self, name: str, parameters: dict[str, Any], binary: bool) -> None:
        self.name = name
        self.parameters = parameters
        self.binary = binary


class InferRequest:
    """A decoded V2 inference request: what a custom model's hooks receive on V2."""

    __slots__ = ("binary_output", "id", "inputs", "model_name", "outputs", "parameters")

    def __init__(
        self,
        model_name: str,
        inputs: list[InferInput],
        id: str | None = None,
        parameters: dict[str, Any] | None = None,
        outputs: list[RequestedOutput] | None = None,
        binary_output: bool = False,
    ) -> None:
        self.model_name = model_name
        self.inputs = inputs
        self.id = id
        self.parameters = parameters or {}
        self.outputs = outputs
        self.binary_output = binary_output

    @property
    def content_type(self) -> str | None:
        """The request's `parameters.content_type` (`"pd"`: the inputs are a table's columns)."""
        value = self.parameters.get("content_type")
        return value if isinstance(value, str) else None

    def as_dataframe(self) -> Any:
        """The inputs as a pandas DataFrame, one column per input named by it (as KServe's
        `InferRequest.as_dataframe`)."""
        from knserve.runtime.protocols.dataframe import v2_frame

        return v2_frame(self.inputs)


class InferOutput:
    __slots__ = ("data", "datatype", "name", "parameters", "shape")

    def __init__(
        self, name: str, data: np.ndarray, parameters: dict[str, Any] | None = None
    ) -> None:
        self.name = name
        self.data = data
        self.datatype = datatype_of(data.dtype)
        self.shape = list(data.shape)
        self.parameters = parameters or {}


class InferResponse:
    """A V2 inference response, as a custom model may return it."""

    __slots__ = ("id", "model_name", "model_version", "outputs", "parameters")

    def __init__(
        self,
        model_name: str,
        outputs: list[InferOutput],
        id: str | None = None,
        model_version: str | None = None,
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self.model_name = model_name
        self.outputs = outputs
        self.id = id
        self.model_version = model_version
        self.parameters = parameters or {}


def decode_request(body: bytes, model_name: str, header_length: int | None = None) -> InferRequest:
    """Decode a V2 request body (JSON, or JSON + binary tensors when `header_length` is given)."""
    binary = b""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length is {header_length} but the body has {len(body)} bytes"
            )
        binary = body[header_length:]
        body = body[:header_length]
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    return decode_payload(payload, model_name, binary)


def decode_payload(payload: Any, model_name: str, binary: bytes = b"") -> InferRequest:
    """Decode an already parsed V2 request (CloudEvents hand their data in parsed)."""
    if not isinstance(payload, dict):
        raise InvalidInput('a V2 request must be a JSON object with an "inputs" list')
    raw_inputs = payload.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput('a V2 request needs "inputs": a non-empty list of tensors')
    parameters = _object(payload.get("parameters"), "parameters")
    offset = 0
    inputs = []
    for index, raw in enumerate(raw_inputs):
        tensor, offset = _decode_input(raw, index, binary, offset)
        inputs.append(tensor)
    if offset != len(binary):
        raise InvalidInput(
            f"the binary data has {len(binary)} bytes but the inputs' binary_data_size add up to {offset}"
        )
    binary_output = bool(parameters.get("binary_data_output", False))
    outputs = None
    raw_outputs = payload.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInput('"outputs" must be a list of {"name": ...} objects')
        outputs = []
        for raw in raw_outputs:
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise InvalidInput('each requested output must be an object with a "name"')
            params = _object(raw.get("parameters"), f"outputs[{raw['name']}].parameters")
            outputs.append(
                RequestedOutput(raw["name"], params, bool(params.get("binary_data", binary_output)))
            )
    request_id = payload.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput('"id" must be a string')
    return InferRequest(model_name, inputs, request_id, parameters, outputs, binary_output)


def _object(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f'"{where}" must be a JSON object')
    return value


def _decode_input(raw: Any, index: int, binary: bytes, offset: int) -> tuple[InferInput, int]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"inputs[{index}] must be an object with name, shape, datatype and data")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f'inputs[{index}] needs a "name" string')
    datatype = raw.get("datatype")
    if not isinstance(datatype, str) or datatype not in TO_NUMPY:
        raise InvalidInput(
            f"input {name!r} has datatype {datatype!r}; it must be one of {', '.join(DATATYPES)}"
        )
    shape = raw.get("shape")
    if not _is_shape(shape):
        raise InvalidInput(f'input {name!r} needs a "shape": a list of non-negative integers')
    raw_parameters = raw.get("parameters")
    parameters = (
        {} if raw_parameters is None else _object(raw_parameters, f"inputs[{name}].parameters")
    )
    size = parameters.get("binary_data_size") if parameters else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise InvalidInput(
                f"input {name!r} has binary_data_size {size!r} but only {len(binary) - offset} "
                "bytes of binary data remain"
            )
        array = _from_bytes(name, datatype, shape, binary[offset : offset + size])
        return InferInput(name, datatype, shape, array, parameters), offset + size
    if "data" not in raw:
        raise InvalidInput(f'input {name!r} has no "data" (and no binary_data_size)')
    array = decode_tensor(name, datatype, shape, raw["data"])
    return InferInput(name, datatype, shape, array, parameters, raw["data"]), offset


def _is_shape(shape: Any) -> TypeGuard[list[int]]:
    # `type(d) is int`: a JSON true is a bool, and a bool is no dimension
    return type(shape) is list and all(type(d) is int and d >= 0 for d in shape)


def decode_tensor(name: str, datatype: str, shape: list[int], data: Any) -> np.ndarray:
    """JSON tensor data (flat or nested, row-major) → an array of `datatype` and `shape`."""
    expected = math.prod(shape)
    if datatype == "BYTES":
        flat = _flatten(data) if isinstance(data, list) else [data]
        if not all(isinstance(x, str | bytes) for x in flat):
            raise InvalidInput(f"input {name!r} is BYTES, its data must be strings")
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        try:
            array = np.asarray(data)
        except ValueError as exc:
            raise InvalidInput(f"input {name!r} has ragged data: {exc}") from None
        target = TO_NUMPY[datatype]
        if array.dtype.kind in "iuf" and target.kind == "f":
            # numbers into a floating-point tensor: nothing to check (the common request)
            array = array.astype(target, copy=False)
        else:
            array = _cast(name, datatype, array, data)
    if array.size != expected:
        raise InvalidInput(
            f"input {name!r} has shape {shape} ({expected} elements) but {array.size} data elements"
        )
    return array.reshape(shape)


def _cast(name: str, datatype: str, array: np.ndarray, data: Any) -> np.ndarray:
    kind = array.dtype.kind
    target = TO_NUMPY[datatype]
    if datatype == "BOOL":
        if kind != "b" and array.size:
            raise InvalidInput(f"input {name!r} is BOOL, its data must be true or false")
        return array.astype(np.bool_, copy=False)
    if target.kind in "iu":
        if kind in "Of" and array.size:
            # Python ints past int64 (UINT64's upper half) make NumPy infer float64 or objects,
            # so the JSON values themselves decide whether they are integers.
            flat = _flatten(data) if isinstance(data, list) else [data]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
                raise InvalidInput(f"input {name!r} is {datatype}, its data must be integers")
            info = np.iinfo(target)
            if min(flat) < info.min or max(flat) > info.max:
                raise InvalidInput(
                    f"input {name!r} is {datatype}, its values must lie in [{info.min}, {info.max}]"
                )
            return np.array(flat, dtype=target).reshape(array.shape)
        if kind not in "iu" and array.size:
            raise InvalidInput(f"input {name!r} is {datatype}, its data must be integers")
        if array.size:
            info = np.iinfo(target)
            low, high = array.min(), array.max()
            if low < info.min or high > info.max:
                raise InvalidInput(
                    f"input {name!r} is {datatype}, its values must lie in [{info.min}, {info.max}]"
                )
        return array.astype(target, copy=False)
    # floating point: integers and floats are numbers, anything else is not
    if kind not in "iuf" and array.size:
        raise InvalidInput(f"input {name!r} is {datatype}, its data must be numbers")
    return array.astype(target, copy=False)


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            out.append(item)
        else:
            stack.pop()
    return out


def _from_bytes(name: str, datatype: str, shape: list[int], raw: bytes) -> np.ndarray:
    expected = math.prod(shape)
    if datatype == "BYTES":
        items: list[bytes] = []
        position = 0
        while position < len(raw):
            if position + 4 > len(raw):
                raise InvalidInput(f"input {name!r}: truncated BYTES element length")
            length = int.from_bytes(raw[position : position + 4], "little")
            position += 4
            if position + length > len(raw):
                raise InvalidInput(f"input {name!r}: BYTES element runs past the binary data")
            items.append(raw[position : position + length])
            position += length
        array = np.empty(len(items), dtype=object)
        array[:] = items
    else:
        dtype = TO_NUMPY[datatype].newbyteorder("<")
        if len(raw) != expected * dtype.itemsize:
            raise InvalidInput(
                f"input {name!r} has shape {shape} of {datatype} ({expected * dtype.itemsize} bytes) "
                f"but binary_data_size {len(raw)}"
            )
        array = np.frombuffer(raw, dtype=dtype)
    if array.size != expected:
        raise InvalidInput(
            f"input {name!r} has shape {shape} ({expected} elements) but {array.size} data elements"
        )
    return array.reshape(shape)


def _to_bytes(array: np.ndarray) -> bytes:
    if array.dtype.kind in ("O", "U", "S"):
        parts = []
        for item in array.ravel():
            data = item if isinstance(item, bytes) else str(item).encode()
            parts.append(len(data).to_bytes(4, "little"))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def json_data(array: np.ndarray) -> Any:
    """Row-major flat data of an array in a form orjson serialises (NumPy where it can)."""
    flat = array.ravel()
    kind = flat.dtype.kind
    if kind == "f" and flat.dtype != np.float64:
        # KServe writes an FP32/FP16 value as the float64 it widens to (InferOutput's
        # set_data_from_numpy: `.item()` of each element), so a client reading the JSON as float64
        # gets exactly the model's value widened; orjson alone writes float32's shortest form.
        return flat.astype(np.float64)
    if kind in _JSON_NATIVE:
        return flat if flat.flags.c_contiguous else np.ascontiguousarray(flat)
    return [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in flat.tolist()]


def encode_response(
    model_name: str,
    outputs: list[tuple[str, np.ndarray, bool]],
    request_id: str | None,
    model_version: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """The response body for (name, array, binary?) outputs; the header length when binary."""
    entries = []
    blobs = []
    for name, array, binary in outputs:
        entry: dict[str, Any] = {
            "name": name,
            "datatype": datatype_of(array.dtype),
            "shape": list(array.shape),
        }
        if binary:
            blob = _to_bytes(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = json_data(array)
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "outputs": entries}
    if model_version is not None:
        response["model_version"] = model_version
    if request_id is not None:
        response["id"] = request_id
    if parameters:
        response["parameters"] = parameters
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)
