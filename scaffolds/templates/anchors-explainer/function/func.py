"""{{name}}: explains a predictor's answers with Alibi's AnchorTabular over its HTTP endpoint.

This is KServe's alibi explainer of type AnchorTabular (`spec.explainer.alibi.type`), as a
function. It answers `:explain` (KServe's V1 path) with one instance; the answer is alibi's own
Explanation JSON: `data.anchor`, `data.precision`, `data.coverage`.

The predictor is reached at PREDICTOR_HOST, over V1 by default (a class per instance from
`:predict`; probabilities work too, anchors explain the most likely class). train.npy holds the
rows the explainer is fitted on and anchors.json the features' names, the categorical columns,
the precision threshold and the seed (prepare.py wrote iris's).
"""

import json
import os
from pathlib import Path

import numpy as np

from knserve.runtime import Model
from knserve.runtime.explainers import AnchorTabularExplainer, http_predict

ROOT = Path(__file__).resolve().parent.parent


class Explainer(Model):
    def __init__(self, name, predict=None):
        super().__init__(name)
        self.predict_fn = predict  # tests hand in a local predict function

    def load(self):
        config = json.loads((ROOT / "anchors.json").read_text())
        predict = self.predict_fn or http_predict(
            os.environ.get("PREDICTOR_HOST", "127.0.0.1:8080"),
            os.environ.get("PREDICTOR_MODEL", self.name),
            protocol=os.environ.get("PREDICTOR_PROTOCOL", "v1"),
            output=os.environ.get("PREDICTOR_OUTPUT") or None,
        )
        self.explainer = AnchorTabularExplainer(
            predict,
            np.load(ROOT / "train.npy"),
            feature_names=config["feature_names"],
            categorical_names=config.get("categorical_names") or None,
            threshold=config.get("threshold", 0.95),
            seed=config.get("seed", 0),
        )
        self.ready = True
        return self.ready

    def explain(self, payload, headers=None):
        return self.explainer.explain(payload["instances"])
