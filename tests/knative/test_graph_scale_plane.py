"""An InferenceGraph's router is a Knative Service like any other: with `minReplicas: 0` it and
its models scale to zero when idle, and the next request wakes the whole chain."""

from __future__ import annotations

from pathlib import Path

import pytest
from graph_samples import IRIS_INPUT, SEQUENCE, documents, iris_isvcs, train_tree
from net_fixtures import eventually
from plane_fixtures import LocalPlane, apply

pytestmark = pytest.mark.slow


def test_the_router_scales_to_zero_and_wakes_on_a_request(
    fast_plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    plane = fast_plane
    isvcs = iris_isvcs(sklearn_iris_dir, train_tree(tmp_path / "tree"))
    for isvc in isvcs:
        isvc["spec"]["predictor"]["minReplicas"] = 0
    [graph] = documents(SEQUENCE)  # KServe's model-chainer sample, allowed to scale to zero
    graph["metadata"]["name"] = "idle-chain"
    graph["spec"]["minReplicas"] = 0
    apply(plane, tmp_path, *isvcs, graph)
    plane.wait_ready("inferencegraphs", "idle-chain", timeout=240)
    first = plane.call("idle-chain.default.localhost", "/", "POST", json=IRIS_INPUT)
    assert (first.status_code, first.json()) == (200, {"predictions": [1, 1]}), first.text

    def idle() -> bool:
        pods = plane.metrics().get("idle-chain-00001", {})
        return pods.get("actual_pods", 1) == 0

    # the plane is another process: its metrics are what can be observed
    eventually(idle, 90, lambda: f"the router never scaled to zero: {plane.metrics()}")
    woken = plane.call("idle-chain.default.localhost", "/", "POST", json=IRIS_INPUT)
    assert (woken.status_code, woken.json()) == (200, {"predictions": [1, 1]}), woken.text
