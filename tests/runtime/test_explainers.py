"""SHAP explanations equal the library's own output on the same model (Kernel over HTTP, Tree in process)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import orjson
import pytest
from net_fixtures import free_port, serve_in_thread
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from knserve.runtime.asgi import read_body
from knserve.runtime.errors import UpstreamError
from knserve.runtime.explainers import (
    ExplainerError,
    KernelShapExplainer,
    TreeShapExplainer,
    http_predict,
    is_tree_model,
)

shap = pytest.importorskip("shap")


@pytest.fixture(scope="module")
def iris() -> tuple[LogisticRegression, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(x, y), x


def predictor_app(model: LogisticRegression):  # type: ignore[no-untyped-def]
    """A V1 predictor over HTTP returning predict_proba (the explainer only sees the wire)."""

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        instances = np.asarray(orjson.loads(body)["instances"])
        out = orjson.dumps({"predictions": model.predict_proba(instances).tolist()})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": out})

    return app


@pytest.fixture
def predictor_url(iris: tuple[LogisticRegression, np.ndarray]) -> Iterator[str]:
    with serve_in_thread(predictor_app(iris[0])) as url:
        yield url


def test_kernel_shap_over_http_equals_shap_in_process(
    iris: tuple[LogisticRegression, np.ndarray], predictor_url: str
) -> None:
    model, x = iris
    background = x[::15]
    instances = x[[0, 60, 120]]
    explainer = KernelShapExplainer(http_predict(predictor_url, "iris"), background, seed=7)
    answer = explainer.explain(instances.tolist())

    np.random.seed(7)
    reference = shap.KernelExplainer(model.predict_proba, background)
    expected_values = reference.shap_values(instances, silent=True)

    assert answer["meta"]["name"] == "KernelShap"
    np.testing.assert_allclose(np.asarray(answer["data"]["shap_values"]), expected_values)
    np.testing.assert_allclose(answer["data"]["expected_value"], reference.expected_value)
    # Local accuracy: base value + contributions = the model's output for each class.
    contributions = np.asarray(answer["data"]["shap_values"]).sum(axis=1)
    np.testing.assert_allclose(
        contributions + np.asarray(answer["data"]["expected_value"]),
        model.predict_proba(instances),
        atol=1e-6,
    )


def test_tree_shap_equals_shap_and_adds_up_to_the_margin() -> None:
    xgboost = pytest.importorskip("xgboost")
    x, y = load_iris(return_X_y=True)
    model = xgboost.XGBClassifier(n_estimators=20, max_depth=3).fit(x, y == 2)
    assert is_tree_model(model)
    answer = TreeShapExplainer(model).explain(x[:5])
    reference = shap.TreeExplainer(model)
    np.testing.assert_allclose(answer["data"]["shap_values"], reference.shap_values(x[:5]))
    margin = model.predict(x[:5], output_margin=True)
    total = np.asarray(answer["data"]["shap_values"]).sum(axis=1) + answer["data"]["expected_value"]
    np.testing.assert_allclose(total, margin, atol=1e-4)


def test_tree_explainer_refuses_a_model_that_is_not_a_tree_ensemble(
    iris: tuple[LogisticRegression, np.ndarray],
) -> None:
    with pytest.raises(ExplainerError, match="use the KernelShap explainer"):
        TreeShapExplainer(iris[0])


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        pytest.param([[1.0, 2.0]], "have 2 features, the background data has 4", id="width"),
        pytest.param([["a", "b", "c", "d"]], "numeric rows", id="not-numeric"),
        pytest.param(np.zeros((1, 2, 4)).tolist(), "2-D", id="3-d"),
    ],
)
def test_bad_instances_are_refused_with_the_reason(
    iris: tuple[LogisticRegression, np.ndarray], instances: list, message: str
) -> None:
    model, x = iris
    explainer = KernelShapExplainer(model.predict_proba, x[:5])
    with pytest.raises(ExplainerError, match=message):
        explainer.explain(instances)


def test_an_unreachable_predictor_is_reported_with_its_address() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    predict = http_predict(url, "iris", timeout=2)
    with pytest.raises(UpstreamError, match=f"cannot reach the predictor at {url}") as caught:
        predict(np.zeros((1, 4)))
    assert caught.value.status == 502  # the predictor's fault, not the caller's


def test_a_predictor_error_is_reported_with_its_status(predictor_url: str) -> None:
    predict = http_predict(predictor_url, "iris", protocol="v2")
    with pytest.raises(UpstreamError, match="answered 500"):
        predict(np.zeros((1, 4)))
