"""Explanations for predictions: SHAP's KernelExplainer and TreeExplainer, Alibi's AnchorTabular.

Three ways in, as KServe's explainers have them:

- `KernelShapExplainer` is model-agnostic: it only needs a predict function, so it can explain a
  predictor reached over HTTP (`http_predict`, V1 or V2) — the shape of an InferenceService
  explainer component, which KServe always points at the predictor.
- `TreeShapExplainer` is exact and fast for tree ensembles loaded in the same process
  (XGBoost, LightGBM, scikit-learn forests).
- `AnchorTabularExplainer` is KServe's alibi explainer (`type: AnchorTabular`): model-agnostic
  too, it finds the rules ("petal length <= 1.60") under which the predictor's answer for one
  instance holds with a given precision. alibi 0.9.6 needs NumPy < 2, so it lives in a function's
  own environment (`knserve func create -t anchors-explainer`, then `func build`), never in
  knserve's.

Answers use the JSON layout of an alibi `Explanation` (`{"meta": …, "data": …}`), which is what
KServe's alibi-based explainers returned, so existing clients read `data.shap_values`,
`data.expected_value` or `data.anchor` in the familiar place; the anchors answer is alibi's own
`Explanation.to_json()`. SHAP and alibi are imported only when an explainer is built.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping, Sequence
from numbers import Integral, Real
from typing import Any

import httpx
import numpy as np

from knserve.runtime.errors import UpstreamError
from knserve.runtime.propagation import propagation_headers

PredictFn = Callable[[np.ndarray], np.ndarray]

# Tree ensembles SHAP's TreeExplainer handles exactly, by module prefix of the model's class.
_TREE_MODULES = ("xgboost", "lightgbm", "catboost")
_SKLEARN_TREES = (
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
    "GradientBoostingClassifier",
    "GradientBoostingRegressor",
)


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
        "meta": {
            "name": name,
            "type": ["blackbox" if name == "KernelShap" else "whitebox"],
            "explanations": ["local"],
            "params": params,
        },
        "data": data,
    }


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

        background = _reference_table(background, "background data")
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


class AnchorTabularExplainer:
    """Alibi's AnchorTabular over any predict function: anchors that hold for one instance.

    `training_data` is what the explainer samples from and discretises numerical features on (the
    training set, or a representative sample of it); `feature_names` names its columns.
    `categorical_names` maps a column (its index or its name) to the names of its values, for
    columns holding ordinal codes 0, 1, …; every other column is numerical. `threshold` is the
    precision an anchor must reach; `seed` makes the sampling reproducible — each explanation
    equals that of a freshly fitted alibi explainer with the same seed.

    The predict function is first called at the first explanation (alibi calls it once on a row of
    zeros to learn whether it answers classes or probabilities), so the explainer can be built
    before its predictor is up, as an InferenceService's components start side by side.
    """

    def __init__(
        self,
        predict: PredictFn,
        training_data: Any,
        *,
        feature_names: Sequence[str],
        categorical_names: Mapping[int | str, Sequence[str]] | None = None,
        threshold: float = 0.95,
        seed: int | None = 0,
    ) -> None:
        train = _as_table(training_data)
        names = _feature_names(feature_names, train.shape[1])
        self.feature_names = names
        self.categorical_names = _categorical_names(categorical_names or {}, names)
        for column, values in self.categorical_names.items():
            _check_codes(
                train[:, column], values, f"training_data column {column} ({names[column]})"
            )
        if not _is_number(threshold, Real) or not 0 < threshold <= 1:
            raise ExplainerError(f"threshold is {threshold!r}, it must be a precision in (0, 1]")
        if seed is not None and not _is_number(seed, Integral):
            raise ExplainerError(f"seed is {seed!r}, it must be an integer (or None for no seed)")
        self.training_data = train
        self.threshold = float(threshold)
        self.seed = None if seed is None else int(seed)
        self._predict = predict
        self._anchor_tabular = _import_alibi_anchor_tabular()
        self._explainer: Any = None
        # alibi keeps the instance being explained on its sampler and draws from NumPy's global
        # generator, so one explanation runs at a time.
        self._lock = threading.Lock()

    def explain(self, instances: Any) -> dict[str, Any]:
        """The anchor of one instance (a row, or a batch of exactly one), as alibi's Explanation JSON."""
        x = _as_rows(instances, len(self.feature_names), "the training data")
        if len(x) != 1:
            raise ExplainerError(
                f"AnchorTabular explains one instance at a time and {len(x)} were sent; send "
                "each in its own :explain request"
            )
        for column, values in self.categorical_names.items():
            _check_codes(
                x[:, column],
                values,
                f"the instance's column {column} ({self.feature_names[column]})",
            )
        with self._lock:
            explainer = self._fitted()
            if self.seed is not None:
                # alibi seeds NumPy's global generator once, when it is fitted; seeding again here
                # makes every answer the one a fresh explainer would give, whatever ran before.
                np.random.seed(self.seed)
            explanation = explainer.explain(x[0], threshold=self.threshold)
        answer: dict[str, Any] = json.loads(explanation.to_json())
        return answer

    def _fitted(self) -> Any:
        if self._explainer is None:
            from alibi.exceptions import PredictorCallError, PredictorReturnTypeError

            try:
                explainer = self._anchor_tabular(
                    self._predict,
                    self.feature_names,
                    categorical_names={c: list(v) for c, v in self.categorical_names.items()}
                    or None,
                    seed=self.seed,
                )
            except PredictorCallError as exc:
                if isinstance(exc.__cause__, (ExplainerError, UpstreamError)):  # its own words
                    raise exc.__cause__ from None
                raise ExplainerError(
                    f"the predictor failed on a row of {len(self.feature_names)} zeros: "
                    f"{exc.__cause__!r}"
                ) from None
            except PredictorReturnTypeError as exc:
                raise ExplainerError(
                    f"the predict function must return a NumPy array: {exc}"
                ) from None
            self._explainer = explainer.fit(self.training_data)
        return self._explainer


def _import_alibi_anchor_tabular() -> Any:
    try:
        from alibi.explainers import AnchorTabular
    except ImportError as exc:
        raise ExplainerError(
            f"AnchorTabular needs alibi, which cannot be imported here ({exc}). alibi needs NumPy < 2, "
            "so it runs in a function's own environment: `knserve func create -t anchors-explainer "
            "NAME` and `knserve func build`, or `pip install 'knserve[alibi]'` into a separate venv "
            "(never into knserve's own, which has NumPy 2)"
        ) from None
    return AnchorTabular


def _reference_table(data: Any, what: str, hint: str = "") -> np.ndarray:
    """The rows an explainer samples or removes features towards, as a float table."""
    try:
        table = np.asarray(data, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ExplainerError(f"{what} must be numeric rows{hint}: {exc}") from None
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise ExplainerError(
            f"{what} must be a non-empty 2-D array (rows × features), got shape {table.shape}"
        )
    return table


def _is_number(value: object, kind: type) -> bool:
    """Whether `value` is a `kind` (numbers.Real, numbers.Integral) and not a bool (a JSON true).

    A bool answer, not a narrowing one: the annotations say float and int, and the checks are for
    callers who pass something else; narrowing a float to `Real` would leave nothing after it."""
    return isinstance(value, kind) and not isinstance(value, bool)


def _as_table(data: Any) -> np.ndarray:
    table = _reference_table(data, "training_data", " (encode categorical values as 0, 1, …)")
    if not np.isfinite(table).all():
        raise ExplainerError(
            "training_data holds NaN or infinite values; impute or drop those rows"
        )
    return table


def _feature_names(names: Sequence[str], width: int) -> list[str]:
    if isinstance(names, str) or not all(isinstance(n, str) and n for n in names):
        raise ExplainerError(f"feature_names must be a list of non-empty strings, got {names!r}")
    names = list(names)
    if len(names) != width:
        raise ExplainerError(
            f"feature_names has {len(names)} names and training_data has {width} columns; give one "
            "name per column"
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ExplainerError(
            f"feature_names repeats {', '.join(map(repr, repeated))}; names must be unique"
        )
    return names


def _categorical_names(
    given: Mapping[int | str, Sequence[str]], names: list[str]
) -> dict[int, list[str]]:
    """Columns by index, whether given as an index, a digit string (JSON keys) or a feature name."""
    columns: dict[int, list[str]] = {}
    for key, values in given.items():
        is_index = (isinstance(key, int) and not isinstance(key, bool)) or (
            isinstance(key, str) and key.isdigit()
        )
        if isinstance(key, str) and key in names:
            column = names.index(key)
        elif is_index:
            column = int(key)
        else:
            raise ExplainerError(
                f"categorical_names has key {key!r}, which is neither a column index nor a feature "
                f"name; the features are {', '.join(map(repr, names))}"
            )
        if not 0 <= column < len(names):
            raise ExplainerError(
                f"categorical_names has column {column}, but there are {len(names)} columns (0 to {len(names) - 1})"
            )
        if isinstance(values, str) or not values or not all(isinstance(v, str) for v in values):
            raise ExplainerError(
                f"categorical_names[{key!r}] must list the names of the column's values "
                f"(value 0 first), got {values!r}"
            )
        columns[column] = list(values)
    return columns


def _check_codes(values: np.ndarray, names: list[str], where: str) -> None:
    bad = values[(values != np.round(values)) | (values < 0) | (values >= len(names))]
    if len(bad):
        raise ExplainerError(
            f"{where} is categorical with {len(names)} values (codes 0 to {len(names) - 1}), "
            f"but holds {bad[0]:g}"
        )


def _as_rows(
    instances: Any, n_features: int | None, reference: str = "the background data"
) -> np.ndarray:
    try:
        x = np.asarray(instances, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ExplainerError(f"instances must be numeric rows: {exc}") from None
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ExplainerError(f"instances must be rows of features (2-D), got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise ExplainerError(f"instances have {x.shape[1]} features, {reference} has {n_features}")
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
    one by default). A predictor that cannot be reached or answers an error raises
    `UpstreamError` (502: not the caller's mistake).
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
            raise UpstreamError(f"cannot reach the predictor at {base}: {exc!r}") from None
        if response.status_code != 200:
            raise UpstreamError(
                f"the predictor at {base} answered {response.status_code}: {response.text[:300]}"
            )
        payload = response.json()
        if protocol == "v1":
            return np.asarray(payload["predictions"], dtype=float)
        outputs = payload["outputs"]
        chosen = next((o for o in outputs if o["name"] == output), outputs[0])
        return np.asarray(chosen["data"], dtype=float).reshape(chosen["shape"])

    def _post(x: np.ndarray) -> httpx.Response:
        # The explained request's id and trace go on to the predictor, as KServe's do.
        headers = propagation_headers()
        if protocol == "v1":
            return http.post(
                f"{base}/v1/models/{model_name}:predict",
                json={"instances": x.tolist()},
                headers=headers,
            )
        else:
            body = {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": list(x.shape),
                        "datatype": "FP64",
                        "data": x.ravel().tolist(),
                    }
                ]
            }
            if output:
                body["outputs"] = [{"name": output}]
            return http.post(f"{base}/v2/models/{model_name}/infer", json=body, headers=headers)

    return predict
