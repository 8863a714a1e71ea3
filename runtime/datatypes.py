"""The V2 (Open Inference Protocol) tensor datatypes and their NumPy equivalents."""

from __future__ import annotations

import numpy as np

# V2 datatype -> NumPy dtype. BYTES tensors are object arrays of bytes (or str) elements.
TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
DATATYPES = tuple(TO_NUMPY)

_FROM_NUMPY: dict[str, str] = {
    dt.str: name for name, dt in TO_NUMPY.items() if name not in ("BYTES",)
}


def datatype_of(dtype: np.dtype) -> str:
    """The V2 datatype of a NumPy dtype (strings, bytes and objects are BYTES)."""
    found = _FROM_NUMPY.get(dtype.str)
    if found:
        return found
    if dtype.kind in ("U", "S", "O"):
        return "BYTES"
    if dtype.kind == "f":
        return "FP64"
    raise ValueError(f"NumPy dtype {dtype} has no V2 datatype")
