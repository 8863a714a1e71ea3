"""Async chains on a real `knserve up`: a graph annotated `knserve.dev/async-broker` answers 202 at
once, and its three Sequence steps each run on a delivery of the real broker, handing their
output on as events; the result arrives as a `dev.knserve.inferencegraph.response` event at a
subscriber of its own, with the chain's id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from broker_fixtures import Sink, broker, ready, trigger
from graph_samples import IRIS_INPUT, iris_isvcs, train_tree
from plane_fixtures import LocalPlane, apply

pytestmark = pytest.mark.slow


def async_graph() -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "InferenceGraph",
        "metadata": {
            "name": "slow-chain",
            "namespace": "default",
            "annotations": {"knserve.dev/async-broker": "default"},
        },
        "spec": {
            "nodes": {
                "root": {
                    "routerType": "Sequence",
                    "steps": [
                        {"serviceName": "sklearn-iris", "name": "first"},
                        {"serviceName": "xgboost-iris", "name": "second", "data": "$request"},
                        {  # runs only if the tree saw a versicolor
                            "serviceName": "sklearn-iris",
                            "name": "third",
                            "data": "$request",
                            "condition": "predictions.#(==1)",
                        },
                    ],
                }
            }
        },
    }


def test_an_async_sequence_hands_each_step_to_the_broker(
    plane: LocalPlane, tmp_path: Path, sink: Sink, sklearn_iris_dir: Path
) -> None:
    tree = train_tree(tmp_path / "tree")
    ready(
        plane,
        tmp_path,
        broker(),
        trigger(
            "results",
            {"uri": sink.url("/results")},
            filter={"attributes": {"type": "dev.knserve.inferencegraph.response"}},
        ),
        trigger(  # watches every hop go by
            "hops",
            {"uri": sink.url("/hops")},
            filter={"attributes": {"type": "dev.knserve.inferencegraph.step"}},
        ),
    )
    apply(plane, tmp_path, *iris_isvcs(sklearn_iris_dir, tree), async_graph())
    graph = plane.wait_ready("inferencegraphs", "slow-chain", timeout=240)
    assert graph["status"]["annotations"]["knserve.dev/response-type"] == (
        "dev.knserve.inferencegraph.response"
    )
    for step in range(3):
        plane.wait_ready("triggers", f"slow-chain-step-{step}", timeout=30)

    accepted = plane.call("slow-chain.default.localhost", "/", "POST", json=IRIS_INPUT)
    assert accepted.status_code == 202, accepted.text + plane.log()[-3000:]
    receipt = accepted.json()
    assert receipt["type"] == "dev.knserve.inferencegraph.response"
    assert (
        receipt["source"]
        == "/apis/serving.kserve.io/v1alpha1/namespaces/default/inferencegraphs/slow-chain"
    )
    chain = receipt["id"]

    sink.wait(lambda got: any(r.path == "/results" for r in got), 120, "the result", plane)
    [result] = sink.at("/results")
    assert result.headers["ce-knservechain"] == chain
    assert result.headers["ce-knservestatus"] == "200"
    assert json.loads(result.body) == {"predictions": [1, 1]}
    hops = sink.at("/hops")
    assert sorted(h.headers["ce-knservestep"] for h in hops) == ["0", "1", "2"]
    by_step = {h.headers["ce-knservestep"]: json.loads(h.body) for h in hops}
    assert by_step["0"] == {"request": IRIS_INPUT, "response": None}
    assert by_step["2"]["response"] == {"predictions": [1, 1]}  # the tree's answer
    assert all(h.headers["ce-knservechain"] == chain for h in hops)
