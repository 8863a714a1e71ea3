"""The `Model` a user subclasses, shaped like KServe's so a KServe custom model ports by changing
its import, and the adapter that serves a framework `Predictor` as a `Model`.

A request runs `preprocess → predict → postprocess` (or `explain`). Each hook may be a plain or an
`async def` method; the server wraps each one once, when the model is loaded, into a coroutine
that runs it inline or on a thread as `knserve.runtime.offload` decides, so no call site branches
on the kind of function.

What the hooks receive: on V1 the request's JSON object (`{"instances": [...]}`); on V2 an
`InferRequest` (`.inputs[i].data` is a NumPy array, `.inputs[i].name`, `.parameters`, `.id`).
`predict` (or `postprocess`) returns, on V1, a dict sent as is or anything else sent as
`predictions`; on V2 an `InferResponse`, a dict in V2's response shape, or arrays (one output
`output-0`, or a dict of name → array).
"""

from __future__ import annotations

from typing import Any

from knserve.runtime.formats.base import Predictor, TensorSpec


class Model:
    """Base class of a custom model (KServe's `kserve.Model` API)."""

    #: V2 metadata; set them to describe your tensors (optional).
    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    platform: str = "knserve-custom"

    def __init__(self, name: str) -> None:
        self.name = name
        self.ready = False
        self.version: str | None = None

    def load(self) -> bool:
        """Load weights and whatever else the model needs; set and return `self.ready`."""
        self.ready = True
        return self.ready

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        return payload

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        raise NotImplementedError(f"model {self.name} does not implement predict")

    def postprocess(self, result: Any, headers: dict[str, str] | None = None) -> Any:
        return result

    def explain(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        raise NotImplementedError(f"model {self.name} does not implement explain")

    def unload(self) -> None:
        """Release what `load` acquired (called when the model is unloaded)."""
        self.ready = False


def overrides(model: Model, hook: str) -> bool:
    """Whether `model`'s class defines `hook` itself rather than inheriting Model's default."""
    return getattr(type(model), hook, None) is not getattr(Model, hook, None)


class PredictorModel(Model):
    """A framework model (scikit-learn, XGBoost, …) served through its `Predictor`.

    The server decodes requests straight into the predictor's arrays (the fast path); the hooks
    below exist so the Python API and custom pipelines see the same `Model` interface.
    """

    def __init__(self, name: str, predictor: Predictor) -> None:
        super().__init__(name)
        self.predictor = predictor
        self.inputs = list(predictor.inputs)
        self.outputs = list(predictor.outputs)
        self.platform = predictor.format
        self.ready = True

    def load(self) -> bool:
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        import numpy as np

        if isinstance(payload, dict):
            instances = payload.get("instances", payload.get("inputs"))
            (out,) = self.predictor.predict([np.asarray(instances)])
            return {"predictions": out}
        arrays = [i.data for i in payload.inputs]
        names = [o.name for o in payload.outputs] if payload.outputs else None
        results = self.predictor.predict(arrays, names)
        return dict(zip(names or self.predictor.default_outputs, results, strict=True))
