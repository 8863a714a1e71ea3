"""Traces on a real `knserve up`, exported over OTLP/HTTP to a receiver the test runs: a request
through gateway → transformer → predictor (at zero) and an event through broker → trigger →
InferenceService are each one trace, with every span's parent where it belongs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from broker_fixtures import BROKER, broker, ready, trigger
from net_fixtures import ServerProcess
from otlp_receiver import OtlpReceiver, ReceivedSpan, otlp_receiver
from plane_fixtures import FAST_AUTOSCALER, LocalPlane, apply, built_function

pytestmark = pytest.mark.slow
_ = otlp_receiver  # the fixture

TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


@pytest.fixture
def traced_plane(
    spawn: Callable[..., ServerProcess],
    tmp_path: Path,
    otlp_receiver: OtlpReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[LocalPlane]:
    """A plane (and so its replicas) configured by the OTEL_* variables alone, as a user would."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export within 100 ms, not 5 s
    local = LocalPlane(spawn, tmp_path / "plane", FAST_AUTOSCALER)
    yield local
    local.close()


def one(spans: list[ReceivedSpan], name: str, **attributes: object) -> ReceivedSpan:
    found = [
        s
        for s in spans
        if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())
    ]
    assert len(found) == 1, f"{len(found)} spans {name} {attributes}: {spans}"
    return found[0]


def test_a_request_through_transformer_and_a_predictor_at_zero_is_one_trace(
    functions_home: Path,
    traced_plane: LocalPlane,
    otlp_receiver: OtlpReceiver,
    tmp_path: Path,
    sklearn_iris_dir: Path,
) -> None:
    plane = traced_plane
    transformer = built_function(plane, "transformer", tmp_path / "iris-transformer")
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "default"},
        "spec": {
            "predictor": {
                "minReplicas": 0,  # KServe's default is 1
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": f"file://{sklearn_iris_dir}",
                },
            },
            "transformer": {"containers": [{"name": "kserve-container", "image": transformer}]},
        },
    }
    apply(plane, tmp_path, isvc)
    plane.wait_ready("inferenceservices", "iris", timeout=180)
    plane.wait_scaled_to_zero("iris-predictor-00001")  # the autoscaler ticks every second

    response = plane.call(
        "iris.default.localhost",
        "/v1/models/iris:predict",
        "POST",
        json={"instances": [[68, 28, 48, 14]]},
        headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01", "x-request-id": "trace-test-1"},
    )
    assert response.status_code == 200, response.text + plane.log()[-3000:]
    assert response.json() == {"predictions": ["versicolor"]}
    assert response.headers["x-request-id"] == "trace-test-1"

    def complete(spans: list[ReceivedSpan]) -> bool:
        seen = {(s.service, s.name) for s in spans}
        return {
            ("iris-predictor", "postprocess"),
            ("iris-transformer", "postprocess"),
            ("iris-transformer", "v1 iris"),
            ("knserve-gateway", "activation"),
        } <= seen and sum(1 for s in spans if s.name == "route") >= 2

    spans = otlp_receiver.wait_for(complete, timeout=60)
    assert {s.trace_id for s in spans} == {TRACE}  # one trace, the client's

    # the chain of parents, from the predictor's work up to the client
    gateway_in = one(spans, "route", **{"knative.revision": "iris-transformer-00001"})
    transformer_request = next(
        s for s in spans if s.service == "iris-transformer" and s.name == "v1 iris"
    )
    transformer_predict = next(
        s for s in spans if s.service == "iris-transformer" and s.name == "predict"
    )
    gateway_to_predictor = one(spans, "route", **{"knative.revision": "iris-predictor-00001"})
    predictor_request = next(
        s for s in spans if s.service == "iris-predictor" and s.name == "v1 iris"
    )
    assert gateway_in.parent_id == CLIENT_SPAN
    assert gateway_in.attributes["knserve.request_id"] == "trace-test-1"
    assert transformer_request.parent_id == gateway_in.span_id
    assert transformer_predict.parent_id == transformer_request.span_id
    assert gateway_to_predictor.parent_id == transformer_predict.span_id
    assert gateway_to_predictor.attributes["knserve.request_id"] == "trace-test-1"
    assert predictor_request.parent_id == gateway_to_predictor.span_id
    for step in ("preprocess", "predict", "postprocess"):
        span = next(s for s in spans if s.service == "iris-predictor" and s.name == step)
        assert span.parent_id == predictor_request.span_id
    # the predictor's cold start is its own span, under the gateway's route to it
    activation = one(spans, "activation")
    assert activation.parent_id == gateway_to_predictor.span_id
    assert activation.attributes["knative.revision"] == "iris-predictor-00001"
    assert predictor_request.start_ns >= activation.end_ns - 5_000_000  # served once it was up
    assert predictor_request.resource["k8s.namespace.name"] == "default"


def test_an_event_through_broker_trigger_and_inferenceservice_is_one_trace(
    traced_plane: LocalPlane, otlp_receiver: OtlpReceiver, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    plane = traced_plane
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "default"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": f"file://{sklearn_iris_dir}",
                }
            }
        },
    }
    ref = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "name": "iris"}
    ready(
        plane,
        tmp_path,
        isvc,
        broker(),
        trigger(
            "predict",
            {"ref": ref, "uri": "/v1/models/iris:predict"},
            filter={"attributes": {"type": "io.kserve.inference.request"}},
        ),
    )
    plane.wait_ready("inferenceservices", "iris", timeout=60)
    sent = httpx.post(
        f"{plane.broker}/default/{BROKER}",
        headers={
            "ce-specversion": "1.0",
            "ce-id": "event-1",
            "ce-source": "/test",
            "ce-type": "io.kserve.inference.request",
            "content-type": "application/json",
            "traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01",
        },
        content=b'{"instances": [[6.8, 2.8, 4.8, 1.4]]}',
    )
    assert sent.status_code == 202, sent.text

    def delivered(spans: list[ReceivedSpan]) -> bool:
        names = {(s.service, s.name) for s in spans if s.trace_id == TRACE}
        return {
            ("knserve-broker", "ingress commit"),
            ("knserve-broker", "delivery attempt"),
            ("knserve-gateway", "route"),
            ("iris-predictor", "postprocess"),
        } <= names

    spans = [s for s in otlp_receiver.wait_for(delivered, timeout=60) if s.trace_id == TRACE]
    commit = one(spans, "ingress commit")
    attempt = one(spans, "delivery attempt")
    route = one(spans, "route")
    request = next(s for s in spans if s.service == "iris-predictor" and s.name == "v1 iris")
    assert (commit.service, commit.parent_id) == ("knserve-broker", CLIENT_SPAN)
    assert attempt.parent_id == commit.span_id
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["knserve.attempt"] == 1
    assert route.parent_id == attempt.span_id
    assert route.attributes["knative.revision"] == "iris-predictor-00001"
    assert request.parent_id == route.span_id
