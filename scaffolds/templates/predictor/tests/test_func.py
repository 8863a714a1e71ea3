import numpy as np

from function import Predictor
from knserve.runtime import InferInput, InferRequest


def test_v1_predicts_iris_classes():
    model = Predictor("{{name}}")
    assert model.load()
    answer = model.predict({"instances": [[6.8, 2.8, 4.8, 1.4], [5.1, 3.5, 1.4, 0.2]]})
    assert answer == {"predictions": [1, 0]}


def test_v2_returns_classes_and_probabilities():
    model = Predictor("{{name}}")
    model.load()
    rows = np.array([[6.8, 2.8, 4.8, 1.4]], dtype=np.float32)
    answer = model.predict(InferRequest("{{name}}", [InferInput("input-0", "FP32", [1, 4], rows)]))
    assert answer["predict"].tolist() == [1]
    assert answer["predict_proba"].shape == (1, 3)
