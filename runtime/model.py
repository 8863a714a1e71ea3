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
    """Whether `model` has its own `hook` (its class's, or one set on it) rather than Model's."""
    if hook in vars(model):
        return True
    return getattr(type(model), hook, None) is not getattr(Model, hook, None)


class DuckTypedModel(Model):
    """A custom model class that does not subclass `Model`, served through Model's interface.

    KServe calls a model's methods by name, so a class with `load` and `predict` (and, if it
    likes, `preprocess`, `postprocess`, `explain`, a `ready` attribute, V2 `inputs`/`outputs`
    and a `version`) is a model. Its own methods are used where it has them and Model's defaults
    where it has not; `ready` is its own attribute.
    """

    _HOOKS = ("preprocess", "predict", "postprocess", "explain")

    def __init__(self, name: str, inner: Any) -> None:
        # not Model.__init__: its `self.ready = False` would reset the object's own ready
        self.inner = inner
        self.name = name
        self.version = getattr(inner, "version", None)
        for attr in ("inputs", "outputs", "platform"):
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))
        for hook in self._HOOKS:
            method = getattr(inner, hook, None)
            if callable(method):
                setattr(self, hook, method)  # found by `overrides`, called as the model's

    @property
    def ready(self) -> bool:
        return bool(getattr(self.inner, "ready", False))

    @ready.setter
    def ready(self, value: bool) -> None:
        # the class may define `ready` as a read-only property of its own: then it decides
        try:
            self.inner.ready = value
        except AttributeError:
            pass

    def load(self) -> Any:
        return self.inner.load()

    def unload(self) -> None:
        unload = getattr(self.inner, "unload", None)
        if callable(unload):
            unload()
        self.ready = False


def as_model(obj: Any, name: str | None = None) -> Model:
    """`obj` as a `Model`: itself, or a `DuckTypedModel` around a class with `load` and `predict`.

    Raises TypeError, saying what is missing, for anything else.
    """
    if isinstance(obj, Model):
        return obj
    missing = [m for m in ("load", "predict") if not callable(getattr(obj, m, None))]
    name = name or getattr(obj, "name", None)
    if missing or not name:
        lacks = ", ".join([*(f"{m}()" for m in missing), *([] if name else ["a name"])])
        raise TypeError(
            f"{type(obj).__name__} is not a model: it has no {lacks}; subclass "
            "knserve.runtime.Model, or give the class load() and predict() (and a name)"
        )
    return DuckTypedModel(str(name), obj)


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
