"""KServe's documented custom transformer (docs: "Deploy Transformer with InferenceService"), in
its form: it overrides only `preprocess` and `postprocess`, and KServe's default `predict` sends
the request on to `--predictor_host` over `--predictor_protocol` (v1 or v2).

Clients send iris flowers as named features (V1 `instances` of objects, or one V2 FP64 tensor);
the transformer makes the rows the predictor takes and, for V1 clients, turns its class ids into
species names (V2 clients get the predictor's answer, as in KServe's example).
`postprocess` is an `async def` (KServe takes either kind of hook). Test data: knserve runs this
file unedited, under KServe's server and in knserve's runtime.
"""

import argparse
from typing import Dict, Union

import numpy as np

from kserve import (
    InferInput,
    InferRequest,
    InferResponse,
    Model,
    ModelServer,
    logging,
    model_server,
)
from kserve.model import PredictorProtocol

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SPECIES = ["setosa", "versicolor", "virginica"]


class IrisTransformer(Model):
    def __init__(self, name: str):
        super().__init__(name, return_response_headers=True)
        self.ready = True

    def preprocess(
        self, payload: Union[Dict, InferRequest], headers: Dict[str, str] = None
    ) -> Union[Dict, InferRequest]:
        if isinstance(payload, InferRequest):
            rows = payload.inputs[0].as_numpy().astype(np.float64)
        else:
            headers["request-type"] = "v1"
            rows = np.asarray(
                [[instance[f] for f in FEATURES] for instance in payload["instances"]],
                dtype=np.float64,
            )
        infer_inputs = [
            InferInput(name="INPUT__0", datatype="FP64", shape=list(rows.shape), data=rows)
        ]
        infer_request = InferRequest(model_name=self.name, infer_inputs=infer_inputs)

        # Transform to KServe v1/v2 inference protocol
        if self.predictor_config.predictor_protocol == PredictorProtocol.REST_V1.value:
            return {"instances": rows.tolist()}
        else:
            return infer_request

    async def postprocess(
        self,
        infer_response: Union[Dict, InferResponse],
        headers: Dict[str, str] = None,
        response_headers: Dict[str, str] = None,
    ) -> Union[Dict, InferResponse]:
        if "request-type" in headers and headers["request-type"] == "v1":
            if self.predictor_config.predictor_protocol == PredictorProtocol.REST_V1.value:
                classes = infer_response["predictions"]
            else:
                # if predictor protocol is v2 but transformer uses v1
                classes = infer_response.outputs[0].as_numpy().tolist()
            return {"predictions": [SPECIES[c] for c in classes]}
        else:
            return infer_response


parser = argparse.ArgumentParser(parents=[model_server.parser])
args, _ = parser.parse_known_args()

if __name__ == "__main__":
    if args.configure_logging:
        logging.configure_logging(args.log_config_file)
    model = IrisTransformer(args.model_name)
    ModelServer().start([model])
