"""KServe's documented custom model (docs: "Deploy Custom Python Serving Runtime"), in its form,
with the AlexNet of the docs swapped for a scikit-learn model the tests train.

Run as KServe documents it: `python custom_model.py --model_name=custom-model --http_port=8080`
(here also `--model_dir`, where the test saved the model: KServe's docs load torchvision weights).
Test data: knserve runs this file unedited, under KServe's server and in knserve's runtime.
"""

import argparse
import time
from typing import Dict, Union

import joblib
import numpy as np

from kserve import (
    InferOutput,
    InferRequest,
    InferResponse,
    Model,
    ModelServer,
    logging,
    model_server,
)
from kserve.errors import InvalidInput
from kserve.utils.utils import generate_uuid


class IrisModel(Model):
    def __init__(self, name: str, model_dir: str):
        super().__init__(name, return_response_headers=True)
        self.model_dir = model_dir
        self.model = None
        self.ready = False
        self.load()

    def load(self):
        self.model = joblib.load(f"{self.model_dir}/model.joblib")
        # The ready flag is used by model ready endpoint for readiness probes,
        # set to True when model is loaded successfully without exceptions.
        self.ready = True

    def preprocess(
        self, payload: Union[Dict, InferRequest], headers: Dict[str, str] = None
    ) -> np.ndarray:
        if isinstance(payload, Dict) and "instances" in payload:
            headers["request-type"] = "v1"
            return np.asarray(payload["instances"], dtype=np.float64)
        elif isinstance(payload, InferRequest):
            return payload.inputs[0].as_numpy()
        else:
            raise InvalidInput("invalid payload")

    def predict(
        self,
        input_tensor: np.ndarray,
        headers: Dict[str, str] = None,
        response_headers: Dict[str, str] = None,
    ) -> Union[Dict, InferResponse]:
        start = time.time()
        result = self.model.predict(input_tensor)
        infer_output = InferOutput(
            name="output-0", shape=list(result.shape), datatype="INT64", data=result
        )
        infer_response = InferResponse(
            model_name=self.name, infer_outputs=[infer_output], response_id=generate_uuid()
        )
        end = time.time()

        # Example for custom response headers
        if response_headers is not None:
            response_headers.update(
                {"prediction-time-latency": f"{round((end - start) * 1000, 9)}"}
            )

        if "request-type" in headers and headers["request-type"] == "v1":
            return {"predictions": result.tolist()}
        else:
            return infer_response


parser = argparse.ArgumentParser(parents=[model_server.parser])
parser.add_argument("--model_dir", default="/mnt/models", help="A local path to the model file")
args, _ = parser.parse_known_args()

if __name__ == "__main__":
    if args.configure_logging:
        logging.configure_logging(args.log_config_file)
    model = IrisModel(args.model_name, args.model_dir)
    model.load()
    ModelServer().start([model])
