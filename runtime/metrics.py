"""Prometheus metrics of the model server.

KServe's own histograms keep their names and their one label, so existing KServe dashboards work:
`request_preprocess_seconds`, `request_predict_seconds`, `request_postprocess_seconds`,
`request_explain_seconds` (label `model_name`). Added, because KServe cannot say how many requests
failed or how long a whole request took: `knserve_requests_total` (model, protocol, status code)
and `knserve_request_duration_seconds` (model, protocol), plus counters of the batcher, cache and
payload logger.

Each app has its own registry (several servers in one test process do not collide), and label
children are bound once per model, so a request costs a handful of `observe` calls.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ModelMetrics:
    """The metric children of one model, bound once."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self._metrics = metrics
        self.model = model
        self.preprocess = metrics.preprocess.labels(model_name=model)
        self.predict = metrics.predict.labels(model_name=model)
        self.postprocess = metrics.postprocess.labels(model_name=model)
        self.explain = metrics.explain.labels(model_name=model)
        self._durations: dict[str, Any] = {}
        self._counts: dict[tuple[str, int], Any] = {}

    def request(self, protocol: str, status: int, seconds: float) -> None:
        counter = self._counts.get((protocol, status))
        if counter is None:
            counter = self._metrics.requests.labels(self.model, protocol, str(status))
            self._counts[(protocol, status)] = counter
        counter.inc()
        duration = self._durations.get(protocol)
        if duration is None:
            duration = self._metrics.duration.labels(self.model, protocol)
            self._durations[protocol] = duration
        duration.observe(seconds)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.preprocess = Histogram(
            "request_preprocess_seconds", "pre-process request latency", ["model_name"], registry=r
        )
        self.predict = Histogram(
            "request_predict_seconds", "predict request latency", ["model_name"], registry=r
        )
        self.postprocess = Histogram(
            "request_postprocess_seconds",
            "post-process request latency",
            ["model_name"],
            registry=r,
        )
        self.explain = Histogram(
            "request_explain_seconds", "explain request latency", ["model_name"], registry=r
        )
        self.requests = Counter(
            "knserve_requests",
            "requests by model, protocol and HTTP status",
            ["model_name", "protocol", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "knserve_request_duration_seconds",
            "whole-request latency, body read to response",
            ["model_name", "protocol"],
            registry=r,
        )
        self.models_ready = Gauge("knserve_models_ready", "models ready to serve", registry=r)
        self._models: dict[str, ModelMetrics] = {}
        self._collectors: list[Any] = []
        r.register(_Callbacks(self._collectors))

    def model(self, name: str) -> ModelMetrics:
        found = self._models.get(name)
        if found is None:
            found = self._models[name] = ModelMetrics(self, name)
        return found

    def add_counters(self, collect: Any) -> None:
        """Register a callable returning [(metric name, help, {labels}, value)] at scrape time."""
        self._collectors.append(collect)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Callbacks:
    """Counters read from the batchers, caches and loggers when Prometheus scrapes."""

    def __init__(self, sources: list[Any]) -> None:
        self._sources = sources

    def collect(self) -> Any:
        families: dict[str, CounterMetricFamily] = {}
        for source in self._sources:
            for name, help_text, labels, value in source():
                family = families.get(name)
                if family is None:
                    family = families[name] = CounterMetricFamily(
                        name, help_text, labels=list(labels)
                    )
                family.add_metric(list(labels.values()), value)
        yield from families.values()
