"""The contract between the model server and the model formats.

A format loader turns a model folder into a ``Predictor``: named input tensors in, named output
tensors out, with the tensor metadata that the V2 protocol reports. The server owns the wire
protocols (V1, V2, CloudEvents) and hands every format plain NumPy arrays, so a format never
parses JSON and the protocols never know which framework is behind a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor as the V2 metadata endpoint reports it."""

    name: str
    datatype: str  # a V2 datatype: BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BYTES
    shape: tuple[int, ...]  # -1 marks a variable dimension (the batch dimension, usually)


@runtime_checkable
class Predictor(Protocol):
    """A loaded model of one format.

    ``predict`` receives one array per entry of ``inputs``, in that order, each with the batch
    on the first dimension, and returns one array per requested output name, in that order
    (``default_outputs`` when none is named; names are checked by the caller against
    ``outputs``). It is synchronous and may be slow; the server decides where it runs.
    """

    format: str  # "sklearn", "xgboost", "lightgbm", "onnx", "pytorch"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # What a request that names no outputs gets. For the tabular formats that is `output-0` alone
    # (what KServe's servers return); `predict` and `predict_proba` are listed in `outputs` and
    # computed only when a request asks for them, so the common request does not pay for them.
    default_outputs: list[str]
    native: Any  # the framework's own model object (explainers and tests use it)

    def predict(
        self, inputs: Sequence[np.ndarray], outputs: Sequence[str] | None = None
    ) -> list[np.ndarray]: ...


@runtime_checkable
class FramePredictor(Protocol):
    """A Predictor that also takes what KServe's tabular servers hand their framework as is: a
    pandas DataFrame from a named-column request (V1 `instances` of objects, V2
    `content_type: pd`), matched to the model's fitted columns; or a list of str (V1 instances
    that are strings, a V2 BYTES input) for a model whose first step reads text."""

    feature_names: list[str] | None  # the columns the model was fitted on, when it knows them

    def predict_objects(
        self, data: Any, outputs: Sequence[str] | None = None
    ) -> list[np.ndarray]: ...

    def predict_frame(
        self, frame: Any, outputs: Sequence[str] | None = None
    ) -> list[np.ndarray]: ...
