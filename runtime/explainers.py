"""Explanations for predictions: SHAP's KernelExplainer and TreeExplainer.

Two ways in, as KServe's explainers have them:

- `KernelShapExplainer` is model-agnostic: it only needs a predict function, so it can explain a
  predictor reached over HTTP (`http_predict`, V1 or V2) — the shape of an InferenceService
  explainer component, which KServe always points at the predictor.
- `TreeShapExplainer` is exact and fast for tree ensembles loaded in the same process
  (XGBoost, LightGBM, scikit-learn forests).

Answers use the JSON layout of an alibi `Explanation` (`{"meta": …, "data": …}`), which is what
KServe's alibi-based explainers returned, so existing clients read `data.shap_values` and
`data.expected_value` in the familiar place. SHAP is imported only when an explainer is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np

PredictFn = Callable[[np.ndarray], np.ndarray]

# Tree ensembles SHAP's TreeExplainer handles exactly, by module prefix of the model's class.
_TREE_MODULES = ("xgboost", "lightgbm", "catboost")
_SKLEARN_TREES = (
    "DecisionTreeClassifier", "DecisionTreeRegressor", "RandomForestClassifier",
    "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor",
    "GradientBoostingClassifier", "GradientBoostingRegressor",
)  # fmt: skip


class ExplainerError(ValueError):
    """The explainer cannot be built or cannot explain this input; the message says why."""


def is_tree_model(model: Any) -> bool:
    """Whether SHAP's TreeExplainer can explain `model` exactly."""
    cls = type(model)
    return cls.__module__.split(".")[0] in _TREE_MODULES or cls.__name__ in _SKLEARN_TREES


def _listify(values: Any) -> Any:
    if isinstance(values, list):
        return [_listify(v) for v in values]
    return np.asarray(values).tolist()


def _explanation(name: str, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    return {
        "meta": {"name": name, "type": ["blackbox" if name == "KernelShap" else "whitebox"],
                 "explanations": ["local"], "params": params},
        "data": data,
    }  # fmt: skip


class KernelShapExplainer:
    """SHAP's KernelExplainer over any predict function.

    `background` is the reference data the features are removed towards (a few dozen rows, or a
    k-means summary of the training set). `seed` makes the sampling reproducible.
    """

    def __init__(
        self,
        predict: PredictFn,
        background: np.ndarray,
        *,
        feature_names: Sequence[str] | None = None,
        link: str = "identity",
        nsamples: int | str = "auto",
        seed: int | None = 0,
    ) -> None:
        import shap  # heavy: imported only when an explainer is built

        background = np.asarray(background, dtype=float)
        if background.ndim != 2 or len(background) == 0:
            raise ExplainerError(
                f"background data must be a non-empty 2-D array (rows × features), got shape "
                f"{background.shape}"
            )
        self.n_features = background.shape[1]
        self.feature_names = list(feature_names) if feature_names else None
        self.nsamples = nsamples
        self.seed = seed
        self.link = link
        self._explainer = shap.KernelExplainer(predict, background, link=link)

    def explain(self, instances: Any) -> dict[str, Any]:
        """SHAP values of each instance, in alibi's Explanation layout."""
        x = _as_rows(instances, self.n_features)
        if self.seed is not None:
            np.random.seed(self.seed)  # KernelExplainer samples with the global NumPy generator
        values = self._explainer.shap_values(x, nsamples=self.nsamples, silent=True)
        return _explanation(
            "KernelShap",
            {"link": self.link, "nsamples": self.nsamples, "seed": self.seed},
            {
                "shap_values": _listify(values),
                "expected_value": _listify(self._explainer.expected_value),
                "feature_names": self.feature_names,
                "raw": {"instances": x.tolist()},
            },
        )


class TreeShapExplainer:
    """SHAP's TreeExplainer for a tree ensemble in this process (exact, no sampling)."""

    def __init__(self, model: Any, *, feature_names: Sequence[str] | None = None) -> None:
        if not is_tree_model(model):
            raise ExplainerError(
                f"{type(model).__name__} is not a tree ensemble; use the KernelShap explainer"
            )
        import shap

        self.model = model
        self.feature_names = list(feature_names) if feature_names else None
        self._explainer = shap.TreeExplainer(model)

    def explain(self, instances: Any) -> dict[str, Any]:
        x = _as_rows(instances, None)
        values = self._explainer.shap_values(x)
        return _explanation(
            "TreeShap",
            {"model_output": "raw"},
            {
                "shap_values": _listify(values),
                "expected_value": _listify(self._explainer.expected_value),
                "feature_names": self.feature_names,
                "raw": {"instances": x.tolist()},
            },
        )


def _as_rows(instances: Any, n_features: int | None) -> np.ndarray:
    try:
        x = np.asarray(instances, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ExplainerError(f"instances must be numeric rows: {exc}") from None
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ExplainerError(f"instances must be rows of features (2-D), got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise ExplainerError(
            f"instances have {x.shape[1]} features, the background data has {n_features}"
        )
    return x


def http_predict(
    base_url: str,
    model_name: str,
    *,
    protocol: str = "v1",
    output: str | None = None,
    timeout: float = 60.0,
    client: httpx.Client | None = None,
) -> PredictFn:
    """A predict function that asks a predictor over HTTP (V1 `:predict` or V2 `/infer`).

    KernelExplainer calls it with a few thousand perturbed rows at a time, so each call is one
    request carrying all of them. For V2, `output` names the output tensor to explain (the first
    one by default).
    """
    if protocol not in ("v1", "v2"):
        raise ExplainerError(f"protocol is {protocol!r}, it must be v1 or v2")
    base = base_url.rstrip("/")
    if "://" not in base:
        base = f"http://{base}"
    http = client or httpx.Client(timeout=timeout)

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        try:
            response = _post(x)
        except httpx.TransportError as exc:
            raise ExplainerError(f"cannot reach the predictor at {base}: {exc!r}") from None
        if response.status_code != 200:
            raise ExplainerError(
                f"the predictor at {base} answered {response.status_code}: {response.text[:300]}"
            )
        payload = response.json()
        if protocol == "v1":
            return np.asarray(payload["predictions"], dtype=float)
        outputs = payload["outputs"]
        chosen = next((o for o in outputs if o["name"] == output), outputs[0])
        return np.asarray(chosen["data"], dtype=float).reshape(chosen["shape"])

    def _post(x: np.ndarray) -> httpx.Response:
        if protocol == "v1":
            return http.post(
                f"{base}/v1/models/{model_name}:predict", json={"instances": x.tolist()}
            )
        else:
            body = {
                "inputs": [
                    {"name": "input-0", "shape": list(x.shape), "datatype": "FP64",
                     "data": x.ravel().tolist()}
                ]
            }  # fmt: skip
            if output:
                body["outputs"] = [{"name": output}]
            return http.post(f"{base}/v2/models/{model_name}/infer", json=body)

    return predict
