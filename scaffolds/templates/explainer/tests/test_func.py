import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from function import Explainer


def test_explanations_add_up_to_the_prediction():
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    explainer = Explainer("{{name}}", predict=model.predict_proba)
    assert explainer.load()
    answer = explainer.explain({"instances": x[:2].tolist()})
    values = np.asarray(answer["data"]["shap_values"])
    total = values.sum(axis=1) + np.asarray(answer["data"]["expected_value"])
    np.testing.assert_allclose(total, model.predict_proba(x[:2]), atol=1e-6)
