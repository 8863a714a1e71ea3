"""XGBoost models (`model.json`, `model.ubj`, `model.bst`).

A model saved from XGBoost's scikit-learn API (`XGBClassifier.save_model`) keeps that API's
metadata, so it is loaded back as the same estimator and `predict` returns what the user's
estimator returned (classes for a classifier). A model saved from a plain `Booster` is served
with `Booster.predict`, which is what KServe's xgbserver answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from knserve.runtime.formats import ModelFormatError, model_file
from knserve.runtime.formats.tabular import TabularPredictor

FILES = ("model.json", "model.ubj", "model.bst")


def load(model_dir: Path) -> TabularPredictor:
    import xgboost as xgb

    path = model_file(model_dir, FILES, "XGBoost")
    try:
        booster = xgb.Booster(model_file=str(path))
    except Exception as exc:
        raise ModelFormatError(f"cannot load XGBoost model {path}: {exc}") from None
    n_features = booster.num_features()
    sklearn_meta = booster.attr("scikit_learn")
    if sklearn_meta:
        estimator_type = json.loads(sklearn_meta).get("_estimator_type", "regressor")
        cls = xgb.XGBClassifier if estimator_type == "classifier" else xgb.XGBRegressor
        model = cls()
        model.load_model(str(path))
        if estimator_type == "classifier":
            return TabularPredictor(
                "xgboost",
                model,
                model.predict,
                model.predict_proba,
                n_features,
                predict_datatype="INT64",
            )
        return TabularPredictor(
            "xgboost", model, model.predict, None, n_features, predict_datatype="FP32"
        )

    def predict(x: np.ndarray) -> np.ndarray:
        return booster.inplace_predict(x)

    return TabularPredictor("xgboost", booster, predict, None, n_features, predict_datatype="FP32")
