"""The shape shared by the tabular formats (scikit-learn, XGBoost, LightGBM).

One input, `input-0`, rows of features; the output `predict` is the framework's own `predict` on
those rows, and `predict_proba` (for classifiers that have it) is computed only when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from knserve.runtime.formats.base import TensorSpec

ArrayFn = Callable[[np.ndarray], np.ndarray]


class TabularPredictor:
    """A Predictor over a tabular model's `predict` (and optional `predict_proba`)."""

    def __init__(
        self,
        fmt: str,
        native: Any,
        predict: ArrayFn,
        predict_proba: ArrayFn | None,
        n_features: int | None,
        input_datatype: str = "FP32",
        predict_datatype: str = "FP64",
    ) -> None:
        self.format = fmt
        self.native = native
        self._fns: dict[str, ArrayFn] = {"predict": predict}
        if predict_proba is not None:
            self._fns["predict_proba"] = predict_proba
        width = -1 if n_features is None else int(n_features)
        self.inputs = [TensorSpec("input-0", input_datatype, (-1, width))]
        self.outputs = [TensorSpec("predict", predict_datatype, (-1,))]
        if predict_proba is not None:
            self.outputs.append(TensorSpec("predict_proba", "FP64", (-1, -1)))
        self.default_outputs = ["predict"]
        self._predict = predict

    def predict(
        self, inputs: Sequence[np.ndarray], outputs: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        x = inputs[0]
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if outputs is None:
            return [self._predict(x)]
        return [self._fns[name](x) for name in outputs]
