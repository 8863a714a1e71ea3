"""KServe's documented InferenceGraph samples (docs/samples/graph: sequence, switch, ensemble,
splitter), their YAML as KServe ships it, with the stand-ins this machine can run: the models'
`gs://` URIs become folders of locally trained iris models (sklearn for `sklearn-iris`, a
decision tree served by the sklearn runtime for `xgboost-iris`), the switch's `bgtest` image a
Python program that does what it does (bgtest.py), and `{$your-domain}` the plane's domain."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

BGTEST = str(Path(__file__).parent / "bgtest.py")

IRIS_ISVCS = """
apiVersion: "serving.kserve.io/v1beta1"
kind: "InferenceService"
metadata:
  name: "sklearn-iris"
spec:
  predictor:
    sklearn:
      storageUri: "{sklearn}"
---
apiVersion: "serving.kserve.io/v1beta1"
kind: "InferenceService"
metadata:
  name: "xgboost-iris"
spec:
  predictor:
    sklearn:
      storageUri: "{tree}"
"""

SEQUENCE = """
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: model-chainer
spec:
  nodes:
    root:
      routerType: Sequence
      steps:
        - serviceName: sklearn-iris
        - serviceName: xgboost-iris
          data: $request
"""

ENSEMBLE = """
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: ensemble-model
spec:
  nodes:
    root:
      routerType: Ensemble
      steps:
        - serviceName: sklearn-iris
          name: sklearn-iris
        - serviceName: xgboost-iris
          name: xgboost-iris
"""

SPLITTER = """
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata:
  name: splitter-model
spec:
  nodes:
    root:
      routerType: Splitter
      steps:
        - serviceName: sklearn-iris
          weight: 20
        - serviceName: xgboost-iris
          weight: 80
"""

SWITCH_ISVC = """
apiVersion: "serving.kserve.io/v1beta1"
kind: "InferenceService"
metadata:
  name: "{name}"
spec:
  predictor:
    minReplicas: 1
    containers:
    - image: iamlovingit/bgtest:latest
      name: custom
      command: ["{python}", "{bgtest}"]
      env:
      - name: "target"
        value: "{name}"
"""

SWITCH = """
apiVersion: "serving.kserve.io/v1alpha1"
kind: InferenceGraph
metadata:
  name: model-switch
spec:
  nodes:
    root:
      routerType: Switch
      steps:
      - serviceUrl: http://single-1.default.{$your-domain}/switch
        condition: "[@this].#(source==client)" #object matching
      - serviceUrl: http://single-2.default.{$your-domain}/switch
        condition: "instances.#(intval>10)" #array matching
      - serviceUrl: http://single-3.default.{$your-domain}/switch
        condition: "instances.#(strval%*red-server*)" #pattern matching
"""

# docs/samples/graph/iris-input.json
IRIS_INPUT = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}
# the switch sample's request, from its README
SWITCH_INPUT = {
    "source": "client1",
    "instances": [
        {"name": "blue", "intval": 0, "strval": "kserve"},
        {"name": "green", "intval": 1, "strval": "1red-server1"},
    ],
}


def documents(text: str, **values: str) -> list[dict[str, Any]]:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def iris_isvcs(sklearn_dir: Path, tree_dir: Path) -> list[dict[str, Any]]:
    return documents(IRIS_ISVCS, sklearn=f"file://{sklearn_dir}", tree=f"file://{tree_dir}")


def switch_documents(domain: str = "localhost") -> list[dict[str, Any]]:
    isvcs = [
        doc
        for name in ("single-1", "single-2", "single-3")
        for doc in documents(SWITCH_ISVC, name=name, python=sys.executable, bgtest=BGTEST)
    ]
    return [*isvcs, *documents(SWITCH, **{"$your-domain": domain})]


def train_tree(folder: Path) -> Path:
    """A DecisionTreeClassifier on iris (standing in for the sample's xgboost model)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(
        DecisionTreeClassifier(max_depth=3, random_state=0).fit(x, y), folder / "model.joblib"
    )
    return folder
