"""ONNX models (`model.onnx`) on onnxruntime; inputs and outputs come from the graph."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from knserve.runtime.formats import ModelFormatError, model_file
from knserve.runtime.formats.base import TensorSpec

log = logging.getLogger(__name__)

# onnxruntime type strings -> (V2 datatype, NumPy dtype)
_TYPES: dict[str, tuple[str, Any]] = {
    "tensor(bool)": ("BOOL", np.bool_),
    "tensor(uint8)": ("UINT8", np.uint8),
    "tensor(uint16)": ("UINT16", np.uint16),
    "tensor(uint32)": ("UINT32", np.uint32),
    "tensor(uint64)": ("UINT64", np.uint64),
    "tensor(int8)": ("INT8", np.int8),
    "tensor(int16)": ("INT16", np.int16),
    "tensor(int32)": ("INT32", np.int32),
    "tensor(int64)": ("INT64", np.int64),
    "tensor(float16)": ("FP16", np.float16),
    "tensor(float)": ("FP32", np.float32),
    "tensor(double)": ("FP64", np.float64),
    "tensor(string)": ("BYTES", np.object_),
}


def _shape(dims: Sequence[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims)


class OnnxPredictor:
    format = "onnx"

    def __init__(self, session: Any) -> None:
        self.native = session
        self.inputs: list[TensorSpec] = []
        self._input_dtypes: list[Any] = []
        for arg in session.get_inputs():
            if arg.type not in _TYPES:
                raise ModelFormatError(f"ONNX input {arg.name!r} has type {arg.type}, not a tensor")
            datatype, dtype = _TYPES[arg.type]
            self.inputs.append(TensorSpec(arg.name, datatype, _shape(arg.shape)))
            self._input_dtypes.append(dtype)
        self.outputs = []
        for arg in session.get_outputs():
            if arg.type not in _TYPES:
                # e.g. skl2onnx's ZipMap (a sequence of maps): not a tensor, not servable on V2
                log.warning("ONNX output %r has type %s and is not served", arg.name, arg.type)
                continue
            self.outputs.append(TensorSpec(arg.name, _TYPES[arg.type][0], _shape(arg.shape)))
        if not self.outputs:
            raise ModelFormatError("the ONNX graph has no tensor output to serve")
        self.default_outputs = [o.name for o in self.outputs]
        self._names = [i.name for i in self.inputs]

    def predict(
        self, inputs: Sequence[np.ndarray], outputs: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        feed = {
            name: np.asarray(array, dtype=dtype)
            for name, array, dtype in zip(self._names, inputs, self._input_dtypes, strict=True)
        }
        results = self.native.run(list(outputs or self.default_outputs), feed)
        return [np.asarray(r) for r in results]


def load(model_dir: Path) -> OnnxPredictor:
    import onnxruntime as ort

    path = model_file(model_dir, ("model.onnx",), "ONNX")
    options = ort.SessionOptions()
    # One request is small; intra-op threads fight the event loop for the same cores.
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelFormatError(f"cannot load ONNX model {path}: {exc}") from None
    return OnnxPredictor(session)
