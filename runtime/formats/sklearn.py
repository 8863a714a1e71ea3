"""scikit-learn models saved with joblib (`model.joblib`) or pickle (`model.pkl`).

`output-0` is what KServe's sklearnserver answers (sklearnserver/model.py, SKLearnModel.predict):
the estimator's `predict`, or its `predict_proba` when the environment sets `PREDICT_PROBA=true`
and the estimator has one. `predict` and `predict_proba` can also be named in a V2 request.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from knserve.runtime.datatypes import datatype_of
from knserve.runtime.formats import ModelFormatError, model_file
from knserve.runtime.formats.tabular import TabularOutput, TabularPredictor

FILES = ("model.joblib", "model.pkl", "model.pickle")
ENV_PREDICT_PROBA = "PREDICT_PROBA"  # KServe's sklearnserver reads the same variable


def load(model_dir: Path) -> TabularPredictor:
    import joblib

    path = model_file(model_dir, FILES, "scikit-learn")
    try:
        if path.suffix == ".joblib":
            model = joblib.load(path)
        else:
            with path.open("rb") as fh:
                model = pickle.load(fh)
    except Exception as exc:
        raise ModelFormatError(f"cannot load scikit-learn model {path}: {exc}") from None
    if not hasattr(model, "predict"):
        raise ModelFormatError(
            f"{path} holds a {type(model).__name__}, which has no predict method"
        )
    classes = getattr(model, "classes_", None)
    datatype = datatype_of(np.asarray(classes).dtype) if classes is not None else "FP64"
    predict = TabularOutput("predict", datatype, (-1,), model.predict)
    outputs = [predict]
    proba = getattr(model, "predict_proba", None) if classes is not None else None
    if proba is not None:
        width = len(np.asarray(classes))
        outputs.append(TabularOutput("predict_proba", "FP64", (-1, width), proba))
    wants_proba = os.environ.get(ENV_PREDICT_PROBA, "false").lower() == "true"
    first = outputs[-1] if wants_proba and proba is not None else predict
    default = TabularOutput("output-0", first.spec.datatype, first.spec.shape, first.fn)
    names = getattr(model, "feature_names_in_", None)
    return TabularPredictor(
        "sklearn",
        model,
        [default, *outputs],
        getattr(model, "n_features_in_", None),
        None if names is None else [str(n) for n in names],
    )
