"""The models one server holds: loading, readiness, unloading, and what each needs to serve.

A model comes from a folder or URI (its format detected from the files) or is handed in as a
`Model` object through the Python API. Loading runs on a thread, so a large model never stalls
health probes or the models already serving; a model that fails to load is kept with its reason
(`FAILED`), reported by the repository index and by 503s naming the file and the cause, while
the server goes on serving the others. `load_failures` names the models the server was started
with (not the ones a repository folder holds) that failed: the server exits on those, as
KServe's does.

`ServedModel` is what a request sees: the model, its hooks wrapped once into coroutines, its
offload policy and thread pool, its metrics, and its optional batcher and response cache.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import importlib.util
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np

from knserve.runtime.batching import Batcher
from knserve.runtime.cache import ResponseCache
from knserve.runtime.errors import ModelNotFound, ModelNotReady
from knserve.runtime.formats import (
    ModelFormatError,
    detect_format,
    load_predictor,
    normalize_format,
)
from knserve.runtime.metrics import Metrics, ModelMetrics
from knserve.runtime.model import Model, PredictorModel, as_model, overrides
from knserve.runtime.model_config import read_model_config
from knserve.runtime.offload import AlwaysInline, AlwaysThread, CallClock, OffloadPolicy
from knserve.runtime.propagation import current
from knserve.runtime.settings import ModelSpec, RuntimeSettings
from knserve.runtime.storage import StorageError, resolve_model_uri
from knserve.runtime.tracing import Tracer, perf_ns, runtime_service, tracer

log = logging.getLogger(__name__)

LOADING, READY, UNAVAILABLE, FAILED = "LOADING", "READY", "UNAVAILABLE", "FAILED"

Hook = Callable[..., Awaitable[Any]]


class ServedModel:
    """One model as the server serves it."""

    def __init__(self, model: Model, settings: RuntimeSettings, metrics: ModelMetrics) -> None:
        self.model = model
        self.name = model.name
        self.metrics = metrics
        self.predictor = model.predictor if isinstance(model, PredictorModel) else None
        if settings.offload == "always":
            self.policy: OffloadPolicy = AlwaysThread()
        elif settings.offload == "never":
            self.policy = AlwaysInline()
        else:
            self.policy = OffloadPolicy(threshold=settings.offload_threshold_ms / 1000)
        self._pooled = 0  # this model's calls on its thread pool now
        self._executor = ThreadPoolExecutor(
            max_workers=settings.predict_threads, thread_name_prefix=f"predict-{model.name}"
        )
        # Spans of the steps (None unless OTEL_* variables ask for traces).
        self.tracer: Tracer | None = tracer(runtime_service())
        # Hooks a subclass does not override are None: the request path skips them for free.
        self.preprocess = self._wrap("preprocess") if overrides(model, "preprocess") else None
        self.predict = self._wrap("predict")
        self.postprocess = self._wrap("postprocess") if overrides(model, "postprocess") else None
        self.explain = self._wrap("explain") if overrides(model, "explain") else None
        self.batcher: Batcher | None = None
        if settings.max_batch_size > 0:
            batch = self._predict_batch if self.predictor is not None else self._custom_batch
            self.batcher = Batcher(
                batch,
                settings.max_batch_size,
                settings.max_latency_ms / 1000,
                settings.batch_timeout_s,
            )
            if self.tracer is not None:
                self.batcher.waited = self._batch_waited
        self.cache: ResponseCache[Any] | None = (
            ResponseCache(settings.cache_entries, settings.cache_ttl_s)
            if settings.cache_entries > 0
            else None
        )
        self.tree_explainer: Any = None

    def _wrap(self, hook: str) -> Hook:
        fn = getattr(self.model, hook)
        if inspect.iscoroutinefunction(fn):
            call: Hook = fn
        else:

            async def call(*args: Any) -> Any:
                return await self.run_sync(fn, *args)

        return call if self.tracer is None else self._traced(hook, call)

    def _traced(self, hook: str, call: Hook) -> Hook:
        """`call` inside a span named for the hook, a child of the request's span, which calls
        made from the hook (a transformer's to its predictor) are children of in turn."""
        spans = self.tracer
        assert spans is not None

        async def traced(*args: Any) -> Any:
            inbound = current()
            parent = inbound.span if inbound is not None else None
            if inbound is None or parent is None:  # a batch: no one request's
                return await call(*args)
            span, inbound.span = spans.start(hook, parent, attributes={"knserve.model": self.name})
            try:
                return await call(*args)
            except Exception as exc:
                spans.fail(span, f"{type(exc).__name__}: {exc}")
                raise
            finally:
                inbound.span = parent
                span.end()

        return traced

    def record_steps(self, t0: float, t1: float, t2: float, t3: float) -> None:
        """The spans of a framework model's steps, timed already by the request path:
        preprocess (decoding) from t0 to t1, predict to t2, postprocess (encoding) to t3."""
        inbound = current()
        if self.tracer is None or inbound is None or inbound.span is None:
            return
        for step, start, end in (
            ("preprocess", t0, t1),
            ("predict", t1, t2),
            ("postprocess", t2, t3),
        ):
            self.tracer.record(step, inbound.span, perf_ns(start), perf_ns(end))

    def _batch_waited(self, submitted: float, started: float) -> None:
        inbound = current()
        if self.tracer is not None and inbound is not None and inbound.span is not None:
            self.tracer.record("batch wait", inbound.span, perf_ns(submitted), perf_ns(started))

    async def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a synchronous call inline or on this model's threads, as the policy decides."""
        policy = self.policy
        if policy.inline:
            clock = CallClock()
            try:
                return fn(*args)
            finally:
                # Calls queued on the pool before the move inline hold the GIL in turn, and
                # waiting for it is no wait of the model's own.
                policy.record(*clock.cost(alone=not self._pooled))

        def timed() -> Any:
            clock = CallClock()
            try:
                return fn(*args)
            finally:
                policy.record(*clock.cost(alone=False))

        # The request's context goes along, so the hook sees it (`propagation_headers`, logs).
        context = contextvars.copy_context()
        self._pooled += 1  # counted on the loop's thread only, so no lock
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, context.run, timed
            )
        finally:
            self._pooled -= 1

    def predict_arrays(
        self, arrays: list[np.ndarray], outputs: Sequence[str] | None
    ) -> Awaitable[list[np.ndarray]]:
        """The predictor's outputs for `arrays` (through the batcher when batching is on).

        Returns the batcher's (or run_sync's) coroutine rather than being one itself, so a
        batched request suspends through one coroutine level less.
        """
        assert self.predictor is not None
        if self.batcher is not None:
            # The outputs named in full, so a V1 request (its first output) and a V2 request
            # that names none share a batch when they ask for the same outputs.
            names = tuple(outputs or self.predictor.default_outputs)
            # This batcher predicts through _predict_batch, so its rows are arrays, not lists.
            return cast("Awaitable[list[np.ndarray]]", self.batcher.submit(arrays, names))
        return self.run_sync(self.predictor.predict, arrays, outputs)

    async def _predict_batch(self, arrays: list[Any], outputs: Any) -> list[np.ndarray]:
        assert self.predictor is not None
        return await self.run_sync(self.predictor.predict, arrays, list(outputs))

    def predict_instances(self, instances: list[Any]) -> Awaitable[list[Any]]:
        """A custom model's V1 predictions for `instances`, batched with other requests' rows."""
        assert self.batcher is not None
        return self.batcher.submit([instances])

    async def _custom_batch(self, inputs: list[Any], _: Any) -> list[Any]:
        """One call of a custom model's hooks for a batch, as KServe's batcher makes it: a request
        `{"instances": rows}` (no headers: the batch is no one request), whose `predictions`
        hold one row per instance."""
        payload: Any = {"instances": inputs[0]}
        headers: dict[str, str] = {}
        if self.preprocess is not None:
            payload = await self.preprocess(payload, headers)
        result = await self.predict(payload, headers)
        if self.postprocess is not None:
            result = await self.postprocess(result, headers)
        predictions = result.get("predictions") if isinstance(result, dict) else result
        if predictions is None or isinstance(predictions, (str, bytes, dict)):
            raise ValueError(
                f"model {self.name} returned {type(result).__name__} for a batch; with the "
                "batcher on, predict must return one prediction per instance (a list, an array "
                "or {'predictions': [...]})"
            )
        return [predictions]

    def start_thread(self) -> None:
        """Start a predict thread now rather than on the first request that needs one."""
        self._executor.submit(int)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
        self._executor.shutdown(wait=False, cancel_futures=True)


class _Entry:
    __slots__ = ("configured", "model", "reason", "required", "served", "spec", "state")

    def __init__(
        self,
        spec: ModelSpec | None,
        model: Model | None = None,
        required: bool = True,
        configured: bool = False,
    ) -> None:
        self.spec = spec
        self.model = model
        self.served: ServedModel | None = None
        self.state = UNAVAILABLE
        self.reason = ""
        # named when the server started (not found in a repository folder): it must load
        self.required = required
        # listed by the model config (a TrainedModel): it may fail alone, and goes when unlisted
        self.configured = configured

    @property
    def settled(self) -> bool:
        """Loaded, failed, or unloaded on purpose: no longer on its way to loading."""
        return self.state in (READY, FAILED) or (self.state == UNAVAILABLE and bool(self.reason))


class ModelRepository:
    """Models by name, with their load state."""

    def __init__(self, settings: RuntimeSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._entries: dict[str, _Entry] = {}
        self._lock = asyncio.Lock()
        for spec in settings.models:
            self.add_spec(spec)
        if settings.model_repository:
            self.scan(Path(settings.model_repository))
        if settings.model_config:
            for spec in read_model_config(settings.model_config).values():
                self._entries.setdefault(spec.name, _Entry(spec, required=False, configured=True))

    def add_spec(self, spec: ModelSpec) -> None:
        self._entries[spec.name] = _Entry(spec)

    def add_model(self, model: Model) -> None:
        """Serve a `Model` object (Python API), or an object with `name`, `load` and `predict`
        (as KServe duck-types models); `load()` is called when the server starts."""
        model = as_model(model)
        self._entries[model.name] = _Entry(None, model)

    def scan(self, folder: Path) -> None:
        """Add one model per sub-folder of a model repository folder."""
        if not folder.is_dir():
            raise FileNotFoundError(f"model repository {folder} is not a folder")
        for child in sorted(folder.iterdir()):
            if child.is_dir() and not child.name.startswith("."):
                spec = ModelSpec(child.name, str(child))
                self._entries.setdefault(child.name, _Entry(spec, required=False))

    def names(self) -> list[str]:
        return list(self._entries)

    async def load_all(self) -> None:
        await asyncio.gather(*(self.load(name) for name in list(self._entries)))
        # The models' objects live as long as the server: kept out of the collector's way, full
        # collections stop rescanning them (each one stalled every request for 65-105 ms).
        gc.collect()
        gc.freeze()

    def _configured(self, name: str) -> ModelSpec | None:
        """The model config's current spec for `name` (re-read: the controller may have just
        added it), or None."""
        if not self.settings.model_config:
            return None
        return read_model_config(self.settings.model_config).get(name)

    async def load(self, name: str) -> None:
        entry = self._entries.get(name)
        spec = self._configured(name) if entry is None or entry.configured else None
        if spec is not None and (entry is None or entry.spec != spec):
            # a new TrainedModel, or one whose storageUri or framework changed
            entry = self._entries[name] = _Entry(spec, required=False, configured=True)
        if entry is None and self.settings.model_repository:
            folder = Path(self.settings.model_repository) / name
            if folder.is_dir():
                entry = self._entries[name] = _Entry(ModelSpec(name, str(folder)), required=False)
        if entry is None:
            raise ModelNotFound(self._not_found(name))
        entry.state, entry.reason = LOADING, ""
        try:
            if entry.spec is None and entry.model is not None and entry.model.ready:
                model = entry.model  # loaded already (a warm template's): no thread to wait on
            else:
                model = await asyncio.to_thread(self._build, entry)
        except Exception as exc:  # a bad model must not take the server down
            entry.state, entry.reason = FAILED, str(exc)
            log.error("model %s failed to load: %s", name, exc)
            self._refresh_gauge()
            return
        old = entry.served
        entry.model = model
        entry.served = ServedModel(model, self.settings, self.metrics.model(name))
        entry.state = READY
        if old is not None:
            await old.close()
        log.info("model %s is ready (%s)", name, getattr(model, "platform", "custom"))
        self._refresh_gauge()

    def _build(self, entry: _Entry) -> Model:
        if entry.spec is None:
            model = entry.model
            assert model is not None
            if not model.ready:
                result = model.load()
                if inspect.isawaitable(result):
                    result = asyncio.run(_await(result))
                if not model.ready and result is not True:
                    raise ModelFormatError(f"{type(model).__name__}.load() did not set ready")
                model.ready = True
            return model
        return build_model(entry.spec)

    async def unload(self, name: str) -> None:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFound(self._not_found(name))
        served, entry.served = entry.served, None
        entry.state, entry.reason = UNAVAILABLE, "unloaded"
        if entry.spec is not None:
            entry.model = None  # loaded again from its files; a Python API model is kept
        if entry.configured and self._configured(name) is None:
            del self._entries[name]  # its TrainedModel is gone: 404 from now on
        if served is not None:
            await served.close()
            served.model.unload()
            del served
            gc.collect()  # frozen at start or not, the model's arrays go now, not eventually
        self._refresh_gauge()

    def get(self, name: str) -> ServedModel:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFound(self._not_found(name))
        if entry.state != READY or entry.served is None:
            detail = {
                LOADING: "is loading",
                UNAVAILABLE: "is not loaded" + (f" ({entry.reason})" if entry.reason else ""),
                FAILED: f"failed to load: {entry.reason}",
            }.get(entry.state, entry.state)
            raise ModelNotReady(f"model {name} {detail}")
        return entry.served

    def state(self, name: str) -> str:
        entry = self._entries.get(name)
        if entry is None:
            raise ModelNotFound(self._not_found(name))
        return entry.state

    def load_failures(self) -> list[str]:
        """`model NAME failed to load: REASON`, one line each, for the models the server was
        started with that failed to load."""
        return [
            f"model {name} failed to load: " + " ".join(entry.reason.split())
            for name, entry in self._entries.items()
            if entry.required and entry.state == FAILED
        ]

    def all_ready(self) -> bool:
        """Every model ready, except that a model config's models need only have been tried:
        one TrainedModel that fails to load fails alone (its reason in the index and its 503s),
        as KServe's agent goes on with the others. A multi-model server may hold none yet."""
        entries = self._entries.values()
        if not self._entries and not self.settings.model_config:
            return False
        return all(e.settled if e.configured else e.state == READY for e in entries)

    def index(self) -> list[dict[str, Any]]:
        out = []
        for name, entry in self._entries.items():
            item: dict[str, Any] = {"name": name, "state": entry.state}
            version = entry.model.version if entry.model is not None else None
            if version:
                item["version"] = version
            if entry.reason:
                item["reason"] = entry.reason
            out.append(item)
        return out

    def _not_found(self, name: str) -> str:
        available = ", ".join(self._entries) or "none"
        return f"model {name} is not served here; available models: {available}"

    def start_threads(self) -> None:
        """Each loaded model's predict thread, started now (a warm replica's, before its first
        request)."""
        for entry in self._entries.values():
            if entry.served is not None:
                entry.served.start_thread()

    def _refresh_gauge(self) -> None:
        self.metrics.models_ready.set(sum(e.state == READY for e in self._entries.values()))

    async def close(self) -> None:
        for entry in self._entries.values():
            if entry.served is not None:
                await entry.served.close()


async def _await(awaitable: Any) -> Any:
    return await awaitable


def build_model(spec: ModelSpec) -> Model:
    """The model `spec` names, fetched and loaded (blocking: call it on a thread or before the
    server starts, as a warm template does); raises `ModelFormatError` saying why it cannot."""
    try:
        folder = resolve_model_uri(spec.uri)
    except StorageError as exc:
        raise ModelFormatError(str(exc)) from None
    fmt = normalize_format(spec.format) if spec.format else detect_format(folder)
    if fmt == "custom":
        model = load_custom_model(folder / "model.py", spec.name)
        result = model.load()
        if inspect.isawaitable(result):
            asyncio.run(_await(result))
        model.ready = True
        return model
    return PredictorModel(spec.name, load_predictor(folder, fmt))


def load_custom_model(path: Path, name: str) -> Model:
    """Import `model.py` and instantiate its model class with the model's name.

    The class is the one subclass of `knserve.runtime.Model` the file defines (or, failing that,
    the one class with `load` and `predict` methods), so a KServe custom model works once its
    import is changed.
    """
    if not path.is_file():
        raise ModelFormatError(f"custom model file {path} does not exist")
    module_name = f"knserve_custom_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))  # model.py may import files beside it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise ModelFormatError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.remove(str(path.parent))
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and obj.__module__ == module_name
    ]
    # A Model subclass, else a duck-typed class (with `load` and `predict`) that as_model wraps.
    candidates: list[type] = [c for c in classes if issubclass(c, Model)] or [
        c
        for c in classes
        if callable(getattr(c, "predict", None)) and callable(getattr(c, "load", None))
    ]
    if len(candidates) != 1:
        found = ", ".join(c.__name__ for c in candidates) or "none"
        raise ModelFormatError(
            f"{path} must define exactly one model class (a subclass of knserve.runtime.Model); found: {found}"
        )
    cls = candidates[0]
    try:
        model = cls(name)
    except TypeError:
        model = cls()
        model.name = name
    return as_model(model, name)
