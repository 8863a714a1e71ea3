"""{{name}}: a transformer in front of a predictor, as KServe's transformers are.

`preprocess` turns the caller's request into the predictor's, `predict` forwards it over HTTP to
the predictor at PREDICTOR_HOST (V1, or V2 with PREDICTOR_PROTOCOL=v2), and `postprocess` turns
the answer into the caller's. Here: measurements in millimetres in, iris species names out.
The call carries the request's `x-request-id` and trace on (`propagation_headers`), so the
predictor's spans and log lines join the transformer's.
"""

import os

import httpx
import numpy as np

from knserve.runtime import Model
from knserve.runtime.propagation import propagation_headers

SPECIES = ["setosa", "versicolor", "virginica"]


class Transformer(Model):
    def __init__(self, name, transport=None):
        super().__init__(name)
        self.predictor_host = os.environ.get("PREDICTOR_HOST", "127.0.0.1:8080")
        self.protocol = os.environ.get("PREDICTOR_PROTOCOL", "v1")
        self.predictor_model = os.environ.get("PREDICTOR_MODEL", name)
        self.transport = transport  # tests hand in an in-process transport

    def load(self):
        self.client = httpx.AsyncClient(transport=self.transport, timeout=60.0)
        self.ready = True
        return self.ready

    def preprocess(self, payload, headers=None):
        rows = np.asarray(payload["instances"], dtype=float) / 10.0  # mm -> cm
        return rows

    async def predict(self, rows, headers=None):
        base = f"http://{self.predictor_host}"
        if self.protocol == "v2":
            body = {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                                "data": rows.ravel().tolist()}]}
            response = await self.client.post(
                f"{base}/v2/models/{self.predictor_model}/infer",
                json=body,
                headers=propagation_headers(),
            )
            response.raise_for_status()
            return response.json()["outputs"][0]["data"]
        response = await self.client.post(
            f"{base}/v1/models/{self.predictor_model}:predict",
            json={"instances": rows.tolist()},
            headers=propagation_headers(),
        )
        response.raise_for_status()
        return response.json()["predictions"]

    def postprocess(self, predictions, headers=None):
        return {"predictions": [SPECIES[int(p)] for p in predictions]}
