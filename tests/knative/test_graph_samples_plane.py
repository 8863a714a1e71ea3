"""KServe's documented InferenceGraph samples on a real `knserve up`, answering as KServe's
docs show (docs/samples/graph/README.md), with sklearn models standing in for their models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from graph_samples import (
    ENSEMBLE,
    IRIS_INPUT,
    SEQUENCE,
    SPLITTER,
    SWITCH_INPUT,
    documents,
    iris_isvcs,
    switch_documents,
    train_tree,
)
from plane_fixtures import LocalPlane, apply

pytestmark = pytest.mark.slow


def wait_graph(plane: LocalPlane, name: str) -> dict[str, Any]:
    graph = plane.wait_ready("inferencegraphs", name, timeout=240)
    assert graph["status"]["url"] == f"http://{name}.default.localhost"
    return graph


def test_sequence_ensemble_and_splitter_samples(
    plane: LocalPlane, tmp_path: Path, sklearn_iris_dir: Path
) -> None:
    tree = train_tree(tmp_path / "tree")
    graphs = [*documents(SEQUENCE), *documents(ENSEMBLE), *documents(SPLITTER)]
    apply(plane, tmp_path, *iris_isvcs(sklearn_iris_dir, tree), *graphs)
    for graph in ("model-chainer", "ensemble-model", "splitter-model"):
        wait_graph(plane, graph)

    # `curl http://model-chainer… -d @./iris-input.json` → {"predictions":[1,1]}
    sequence = plane.call("model-chainer.default.localhost", "/", "POST", json=IRIS_INPUT)
    assert sequence.status_code == 200, sequence.text + plane.log()[-3000:]
    assert sequence.json() == {"predictions": [1, 1]}
    assert sequence.headers["content-type"] == "application/json"

    ensemble = plane.call("ensemble-model.default.localhost", "/", "POST", json=IRIS_INPUT)
    assert ensemble.status_code == 200, ensemble.text
    assert ensemble.json() == {
        "sklearn-iris": {"predictions": [1, 1]},
        "xgboost-iris": {"predictions": [1, 1]},
    }

    for _ in range(5):  # either model answers: both say versicolor
        split = plane.call("splitter-model.default.localhost", "/", "POST", json=IRIS_INPUT)
        assert (split.status_code, split.json()) == (200, {"predictions": [1, 1]})

    # the CLI: KServe's `kubectl get ig` columns, and describe with where each step goes
    listed = plane.knserve("graph", "list")
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME", "URL", "READY", "AGE"]
    assert any(
        r.split()[:3] == ["model-chainer", "http://model-chainer.default.localhost", "True"]
        for r in rows
    )
    described = plane.knserve("ig", "describe", "model-chainer")
    assert described.returncode == 0, described.stderr
    assert "root (Sequence)" in described.stdout
    assert (
        "→ http://xgboost-iris.default.svc.cluster.local/v1/models/xgboost-iris:predict"
        in described.stdout
    )


def test_switch_sample_routes_by_gjson_condition(plane: LocalPlane, tmp_path: Path) -> None:
    apply(plane, tmp_path, *switch_documents())
    wait_graph(plane, "model-switch")
    # only "instances.#(strval%*red-server*)" matches the README's input: single-3 answers
    answer = plane.call("model-switch.default.localhost", "/", "POST", json=SWITCH_INPUT)
    assert answer.status_code == 200, answer.text + plane.log()[-3000:]
    assert answer.json() == {"from": "single-3", "instances": SWITCH_INPUT["instances"]}

    client = {**SWITCH_INPUT, "source": "client"}
    assert plane.call("model-switch.default.localhost", "/", "POST", json=client).json()[
        "from"
    ] == ("single-1")
    # nothing matches: the router's 404 and error body
    missed = plane.call("model-switch.default.localhost", "/", "POST", json={"source": "x"})
    assert missed.status_code == 404
    assert missed.json() == {
        "error": "Failed to process request",
        "cause": "None of the routes matched with the switch condition",
    }
