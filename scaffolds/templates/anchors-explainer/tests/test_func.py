import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from function import Explainer


def test_the_anchor_holds_for_the_instance_and_is_precise():
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    explainer = Explainer("{{name}}", predict=model.predict)
    assert explainer.load()
    answer = explainer.explain({"instances": [x[0].tolist()]})
    data = answer["data"]
    assert answer["meta"]["name"] == "AnchorTabular"
    assert data["anchor"], "an anchor names at least one condition"
    assert data["precision"] >= 0.95
    assert 0 < data["coverage"] <= 1
    assert data["raw"]["prediction"] == model.predict(x[:1]).tolist()
