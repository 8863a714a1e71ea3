"""{{name}}: a custom predictor served by knserve.runtime (KServe's V1, V2 and CloudEvents).

`load` reads the model that train.py fitted (iris, so it answers at once); replace it with yours.
V1 requests arrive as `{"instances": [...]}`; V2 requests as an InferRequest whose
`inputs[0].data` is a NumPy array.
"""

from pathlib import Path

import joblib
import numpy as np

from knserve.runtime import Model

MODEL_FILE = Path(__file__).resolve().parent.parent / "model.joblib"


class Predictor(Model):
    def load(self):
        self.model = joblib.load(MODEL_FILE)
        self.ready = True
        return self.ready

    def preprocess(self, payload, headers=None):
        return payload

    def predict(self, payload, headers=None):
        if isinstance(payload, dict):  # V1
            rows = np.asarray(payload["instances"], dtype=float)
            return {"predictions": self.model.predict(rows).tolist()}
        rows = payload.inputs[0].data  # V2
        return {"predict": self.model.predict(rows), "predict_proba": self.model.predict_proba(rows)}

    def postprocess(self, result, headers=None):
        return result
