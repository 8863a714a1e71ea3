"""Eventing meets inference on a real `knserve up`: async inference through a scaled-to-zero
predictor whose answers come back as events, and KServe's payload logger into a broker (and into
a dead sink, which must neither fail nor slow inference).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from broker_fixtures import BROKER, Sink, broker, ready, send, trigger
from net_fixtures import eventually
from plane_fixtures import LocalPlane, apply

pytestmark = pytest.mark.slow

SETOSA = [6.8, 2.8, 4.8, 1.4]  # KServe's iris example: class 1


# ---- (a) async inference through a scaled-to-zero predictor --------------------------------------


def test_async_inference_wakes_a_scaled_to_zero_predictor_and_the_answer_comes_back_as_an_event(
    fast_plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path, sink: Sink
) -> None:
    plane = fast_plane
    predictor = "sklearn-iris-predictor-00001"
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "sklearn-iris", "namespace": "default"},
        "spec": {
            "predictor": {
                "minReplicas": 0,
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "storageUri": f"file://{sklearn_iris_dir}",
                },
            }
        },
    }
    ref = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "name": "sklearn-iris",
    }
    request_type = "io.kserve.inference.request"
    ready(
        plane,
        tmp_path,
        isvc,
        broker(),
        trigger(
            "predict-v1",
            {"ref": ref, "uri": "/v1/models/sklearn-iris:predict"},
            filter={"attributes": {"type": request_type, "protocol": "v1"}},
        ),
        trigger(
            "predict-v2",
            {"ref": ref, "uri": "/v2/models/sklearn-iris/infer"},
            filter={"attributes": {"type": request_type, "protocol": "v2"}},
        ),
        trigger(
            "answers",
            {"uri": sink.url("/answers")},
            filter={"attributes": {"type": "io.kserve.inference.response"}},
        ),
    )
    plane.wait_ready("inferenceservices", "sklearn-iris", timeout=60)
    plane.wait_scaled_to_zero(predictor, timeout=45)
    served_before = plane.metrics()[predictor].get("requests_total", 0)

    send(plane, "req-v1", request_type, {"instances": [SETOSA]}, protocol="v1")
    v2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": SETOSA}]}
    send(plane, "req-v2", request_type, v2, protocol="v2")

    answers = sink.wait(lambda got: len(got) >= 2, 60, "two inference responses", plane)
    by_request = {a.headers["ce-kserverequestid"]: a for a in answers}
    assert set(by_request) == {"req-v1", "req-v2"}
    for answer in answers:
        assert answer.path == "/answers"
        assert answer.headers["ce-type"] == "io.kserve.inference.response"
        assert answer.headers["ce-source"] == "io.kserve.inference.sklearn-iris"
        assert answer.headers["ce-kserverequestsource"] == "/test"
        assert "ce-knativearrivaltime" in answer.headers  # it went through the broker
        assert "ce-knativebrokerttl" not in answer.headers  # the broker's business only
    assert orjson.loads(by_request["req-v1"].body) == {"predictions": [1]}
    assert orjson.loads(by_request["req-v2"].body)["outputs"][0]["data"] == [1]
    woken = plane.metrics()[predictor]
    assert woken["requests_total"] >= served_before + 2
    assert woken["actual_pods"] >= 1  # the activator woke it (it stays for the stable window)


# ---- (e2) KServe's payload logger into a broker on the plane -------------------------------------

# KServe's documented logger URL for a broker; the plane's gateway routes it to its ingress.
BROKER_INGRESS = f"http://broker-ingress.knative-eventing.svc.cluster.local/default/{BROKER}"
LOGGED_TYPES = {"org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response"}


def logged_isvc(name: str, storage: Path, logger: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "predictor": {
                "logger": logger,
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{storage}"},
            }
        },
    }


def replica_counters(plane: LocalPlane, host: str) -> dict[str, float]:
    """The runtime's own /metrics, read from the predictor's replica through the gateway."""
    from prometheus_client.parser import text_string_to_metric_families

    response = plane.call(host, "/metrics")
    assert response.status_code == 200, response.text
    return {
        sample.name.removesuffix("_total"): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if not sample.labels
    }


def test_payload_logger_events_reach_a_broker_on_the_plane_and_a_trigger_delivers_them(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path, sink: Sink
) -> None:
    ready(
        plane,
        tmp_path,
        broker(),
        trigger(
            "audit",
            {"uri": sink.url("/audit")},
            filters=[{"prefix": {"type": "org.kubeflow.serving.inference."}}],
        ),
        logged_isvc("sklearn-iris", sklearn_iris_dir, {"mode": "all", "url": BROKER_INGRESS}),
    )
    plane.wait_ready("inferenceservices", "sklearn-iris", timeout=60)
    host = "sklearn-iris.default.localhost"
    v1 = {"instances": [SETOSA]}
    v2 = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": SETOSA}]}
    calls = [(f"req-{i}", "/v1/models/sklearn-iris:predict", v1) for i in range(3)]
    calls += [(f"req-{i}", "/v2/models/sklearn-iris/infer", v2) for i in range(3, 6)]
    answers = {}
    for request_id, path, body in calls:
        response = plane.call(host, path, "POST", json=body, headers={"x-request-id": request_id})
        assert response.status_code == 200, response.text
        answers[request_id] = response.json()

    got = sink.wait(
        lambda r: len(r) >= 2 * len(calls),
        30,
        "a request and a response event for each of the six calls",
        plane,
    )
    assert {r.path for r in got} == {"/audit"}
    by_key = {(r.id, r.headers["ce-type"]): r for r in got}
    assert len(by_key) == len(got) == 2 * len(calls)  # each exactly once
    for request_id, _, body in calls:
        request = by_key[(request_id, "org.kubeflow.serving.inference.request")]
        response = by_key[(request_id, "org.kubeflow.serving.inference.response")]
        assert orjson.loads(request.body) == body
        assert orjson.loads(response.body) == answers[request_id]
        for event in (request, response):
            assert event.headers["ce-inferenceservicename"] == "sklearn-iris"
            assert event.headers["ce-namespace"] == "default"
            assert event.headers["ce-component"] == "predictor"
            assert event.headers["ce-modelname"] == "sklearn-iris"
            assert "ce-knativearrivaltime" in event.headers  # it went through the broker

    # The broker may deliver an event before the replica's logger has read the ingress's 202 for
    # it (the two run concurrently), so `sent` is awaited, not read once.
    def all_sent() -> dict[str, float] | None:
        seen = replica_counters(plane, "sklearn-iris-predictor.default.localhost")
        return seen if seen["knserve_payload_log_sent"] >= 2 * len(calls) else None

    counters = eventually(all_sent, 20, "the replica never counted its sends", interval=0.05)
    assert counters["knserve_payload_log_sent"] == 2 * len(calls)
    assert counters["knserve_payload_log_failed"] == counters["knserve_payload_log_dropped"] == 0


def test_a_dead_logger_sink_neither_fails_nor_slows_inference_and_is_counted(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    from net_fixtures import free_port

    dead = f"http://127.0.0.1:{free_port()}/"  # nothing listens there
    apply(
        plane, tmp_path, logged_isvc("audited", sklearn_iris_dir, {"mode": "request", "url": dead})
    )
    plane.wait_ready("inferenceservices", "audited", timeout=60)
    for _ in range(20):
        response = plane.call(
            "audited.default.localhost",
            "/v1/models/audited:predict",
            "POST",
            json={"instances": [SETOSA]},
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": [1]}

    def counted() -> dict[str, float] | None:
        seen = replica_counters(plane, "audited-predictor.default.localhost")
        return (
            seen
            if seen["knserve_payload_log_failed"] + seen["knserve_payload_log_dropped"] >= 20
            else None
        )

    # the sends are asynchronous: their failures are counted after the answers
    counters = eventually(counted, 20, "the failed sends were never counted", interval=0.1)
    assert counters["knserve_payload_log_sent"] == 0
    # mode request: one event per call; after a refusal the logger backs off, dropping without
    # trying (tests/runtime/test_payload_logger.py counts the attempts exactly)
    assert counters["knserve_payload_log_failed"] + counters["knserve_payload_log_dropped"] == 20
    assert 1 <= counters["knserve_payload_log_failed"] < 20
