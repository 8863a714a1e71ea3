"""The shape shared by the tabular formats (scikit-learn, XGBoost, LightGBM).

One input, `input-0`, rows of features. The outputs are named as KServe's servers name them:
`output-0` is what KServe's sklearnserver, xgbserver and lgbserver answer for the framework (they
all return one output of that name: kserve/utils/utils.py, get_predict_response), and V1 answers
it too. The framework's own `predict` and `predict_proba`, where they differ or add to it, are
listed after it and computed only when a V2 request names them, so the common request pays for
one call.

A table (a pandas DataFrame from a named-column request) is matched to the columns the model was
fitted on by name, so the request's key order does not matter; extra columns are dropped, as
KServe's lgbserver drops them, and a missing one is a 400 that names it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from knserve.runtime.errors import InvalidInput
from knserve.runtime.formats.base import TensorSpec

ArrayFn = Callable[[Any], np.ndarray]


class TabularOutput:
    """One output of a tabular model: its V2 metadata and the call that computes it."""

    __slots__ = ("fn", "spec")

    def __init__(self, name: str, datatype: str, shape: tuple[int, ...], fn: ArrayFn) -> None:
        self.spec = TensorSpec(name, datatype, shape)
        self.fn = fn


class TabularPredictor:
    """A Predictor over a tabular model's output functions; the first one is the default."""

    def __init__(
        self,
        fmt: str,
        native: Any,
        outputs: list[TabularOutput],
        n_features: int | None,
        feature_names: Sequence[str] | None = None,
        input_datatype: str = "FP32",
        aliases: Callable[[str], str] | None = None,
    ) -> None:
        self.format = fmt
        self.native = native
        self._fns: dict[str, ArrayFn] = {o.spec.name: o.fn for o in outputs}
        width = -1 if n_features is None else int(n_features)
        self.inputs = [TensorSpec("input-0", input_datatype, (-1, width))]
        self.outputs = [o.spec for o in outputs]
        self.default_outputs = [outputs[0].spec.name]
        self._default = outputs[0].fn
        self.n_features = n_features
        self.feature_names: list[str] | None = list(feature_names) if feature_names else None
        # how the framework rewrote a column's name when it stored it (LightGBM: spaces to _)
        self._aliases = aliases

    def predict(
        self, inputs: Sequence[np.ndarray], outputs: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        x = inputs[0]
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if outputs is None:
            return [self._default(x)]
        return [self._fns[name](x) for name in outputs]

    def predict_frame(self, frame: Any, outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """The outputs for a pandas DataFrame, its columns matched to the model's features."""
        return self.predict_objects(self.columns_of(frame), outputs)

    def predict_objects(self, data: Any, outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """The outputs for `data` handed to the framework as it is (a table, a list of str)."""
        if outputs is None:
            return [np.asarray(self._default(data))]
        return [np.asarray(self._fns[name](data)) for name in outputs]

    def columns_of(self, frame: Any) -> Any:
        """`frame` with the model's feature columns in the order it was fitted on."""
        names = self.feature_names
        if names is None:
            # Fitted on bare arrays: the columns are positional, in the request's order.
            width = frame.shape[1]
            if self.n_features is not None and width != self.n_features:
                raise InvalidInput(
                    f"the request has {width} columns ({', '.join(map(str, frame.columns))}); "
                    f"the model takes {self.n_features} features"
                )
            return frame.to_numpy()
        missing = [n for n in names if n not in frame.columns]
        if missing and self._aliases is not None:
            alias = self._aliases
            frame = frame.rename(columns={c: alias(str(c)) for c in frame.columns})
            missing = [n for n in names if n not in frame.columns]
        if missing:
            raise InvalidInput(
                f"the request has no column {', '.join(map(repr, missing))}; the model was "
                f"fitted on the columns {', '.join(map(repr, names))}"
            )
        return frame[names]
