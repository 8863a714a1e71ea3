"""scikit-learn models saved with joblib (`model.joblib`) or pickle (`model.pkl`)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from knserve.runtime.datatypes import datatype_of
from knserve.runtime.formats import ModelFormatError, model_file
from knserve.runtime.formats.tabular import TabularPredictor

FILES = ("model.joblib", "model.pkl", "model.pickle")


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
    proba = getattr(model, "predict_proba", None) if classes is not None else None
    datatype = datatype_of(np.asarray(classes).dtype) if classes is not None else "FP64"
    return TabularPredictor(
        "sklearn",
        model,
        model.predict,
        proba,
        getattr(model, "n_features_in_", None),
        predict_datatype=datatype,
    )
