"""KServe's V1 protocol: `{"instances": [...]}` (or `"inputs"`) in, `{"predictions": [...]}` out."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from knserve.runtime.errors import InvalidInput


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InvalidInput('a V1 request must be a JSON object with "instances" (or "inputs")')
    return payload


def instances_of(payload: dict[str, Any]) -> Any:
    """The request's instances: `instances`, or `inputs` as KServe also accepts (and prefers when
    a body has both: kserve/utils/utils.py, get_predict_input)."""
    instances = payload["inputs"] if "inputs" in payload else payload.get("instances")
    if not isinstance(instances, list) or not instances:
        raise InvalidInput('a V1 request needs "instances" (or "inputs"): a non-empty list of rows')
    return instances


def instances_array(payload: dict[str, Any]) -> np.ndarray:
    """The instances as one numeric array (what the framework formats predict on)."""
    return rows_array(instances_of(payload))


def rows_array(instances: list[Any]) -> np.ndarray:
    """Instances given as rows of numbers as one numeric array."""
    try:
        array = np.asarray(instances)
    except ValueError as exc:
        raise InvalidInput(
            f"instances are ragged: every row must have the same length ({exc})"
        ) from None
    if array.dtype.kind not in "biuf":
        raise InvalidInput("instances must be numbers (rows of numeric features) for this model")
    return array


def encode_predictions(predictions: Any) -> bytes:
    return orjson.dumps({"predictions": predictions}, option=orjson.OPT_SERIALIZE_NUMPY)


def encode(result: Any) -> bytes:
    """A model's V1 result: a dict is sent as is, anything else as `predictions`."""
    if isinstance(result, dict):
        return orjson.dumps(result, option=orjson.OPT_SERIALIZE_NUMPY)
    if isinstance(result, np.ndarray):
        if result.dtype.kind == "f" and result.dtype != np.float64:
            # KServe answers `result.tolist()` (utils.py, get_predict_response): FP32 values as
            # the float64 they widen to, not float32's shortest form that orjson would write.
            result = result.astype(np.float64)
        # orjson writes C-contiguous numeric arrays natively; anything else goes through tolist.
        native = result.dtype.kind in "biuf" and result.flags.c_contiguous
        return encode_predictions(result if native else result.tolist())
    return encode_predictions(result)
