"""XGBoost models (`model.json`, `model.ubj`, `model.bst`).

`output-0` is what KServe's xgbserver answers (xgbserver/model.py, XGBoostModel.predict): the
Booster's own prediction, FP32 — a classifier's probabilities, `[N, classes]` for
`multi:softprob`. A model saved from XGBoost's scikit-learn API (`XGBClassifier.save_model`) keeps
that API's metadata, so it is also loaded as the same estimator and a V2 request may name
`predict` (what the user's estimator returns: classes for a classifier) and `predict_proba`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from knserve.runtime.formats import ModelFormatError, model_file
from knserve.runtime.formats.tabular import TabularOutput, TabularPredictor

FILES = ("model.json", "model.ubj", "model.bst")


def load(model_dir: Path) -> TabularPredictor:
    import xgboost as xgb

    path = model_file(model_dir, FILES, "XGBoost")
    try:
        booster = xgb.Booster(model_file=str(path))
    except Exception as exc:
        raise ModelFormatError(f"cannot load XGBoost model {path}: {exc}") from None
    # inplace_predict answers what Booster.predict(DMatrix(x)) answers, without the DMatrix copy.
    default = TabularOutput("output-0", "FP32", _output_shape(booster), booster.inplace_predict)
    outputs = [default]
    native: Any = booster
    sklearn_meta = booster.attr("scikit_learn")
    if sklearn_meta:
        estimator_type = json.loads(sklearn_meta).get("_estimator_type", "regressor")
        if estimator_type == "classifier":
            native = xgb.XGBClassifier()
            native.load_model(str(path))
            classes = len(getattr(native, "classes_", ())) or -1
            outputs.append(TabularOutput("predict", "INT64", (-1,), native.predict))
            outputs.append(
                TabularOutput("predict_proba", "FP32", (-1, classes), native.predict_proba)
            )
        else:
            native = xgb.XGBRegressor()
            native.load_model(str(path))
            outputs.append(TabularOutput("predict", "FP32", default.spec.shape, native.predict))
    else:
        outputs.append(
            TabularOutput("predict", "FP32", default.spec.shape, booster.inplace_predict)
        )
    return TabularPredictor(
        "xgboost", native, outputs, booster.num_features(), booster.feature_names
    )


def _output_shape(booster: Any) -> tuple[int, ...]:
    """The shape of Booster.predict's answer: one value per row, or a row of values for
    `multi:softprob` (one per class) and multi-target models (one per target)."""
    learner = json.loads(booster.save_config())["learner"]
    params = learner.get("learner_model_param", {})
    if learner.get("objective", {}).get("name") == "multi:softprob":
        return (-1, int(params.get("num_class", -1)))
    targets = int(params.get("num_target", 1))
    return (-1, targets) if targets > 1 else (-1,)
