"""{{name}}: explains a predictor's answers with SHAP's KernelExplainer over its HTTP endpoint.

It answers `:explain` (KServe's V1 path). The predictor is reached at PREDICTOR_HOST; by default
over V2, explaining the output named by PREDICTOR_OUTPUT (`predict_proba` of a knserve
scikit-learn predictor). background.npy holds the reference rows (prepare.py wrote iris's).
"""

import os
from pathlib import Path

import numpy as np

from knserve.runtime import Model
from knserve.runtime.explainers import KernelShapExplainer, http_predict

BACKGROUND = Path(__file__).resolve().parent.parent / "background.npy"


class Explainer(Model):
    def __init__(self, name, predict=None):
        super().__init__(name)
        self.predict_fn = predict  # tests hand in a local predict function

    def load(self):
        predict = self.predict_fn or http_predict(
            os.environ.get("PREDICTOR_HOST", "127.0.0.1:8080"),
            os.environ.get("PREDICTOR_MODEL", self.name),
            protocol=os.environ.get("PREDICTOR_PROTOCOL", "v2"),
            output=os.environ.get("PREDICTOR_OUTPUT", "predict_proba"),
        )
        self.explainer = KernelShapExplainer(predict, np.load(BACKGROUND))
        self.ready = True
        return self.ready

    def explain(self, payload, headers=None):
        return self.explainer.explain(payload["instances"])
