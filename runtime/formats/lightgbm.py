"""LightGBM models (`model.txt`, or `model.bst` holding LightGBM's text format).

Served with `Booster.predict`, as KServe's lgbserver does: probabilities for a classifier, values
for a regressor.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from knserve.runtime.formats import ModelFormatError, model_file
from knserve.runtime.formats.tabular import ArrayFn, TabularPredictor

FILES = ("model.txt", "model.bst")


def load(model_dir: Path) -> TabularPredictor:
    import lightgbm as lgb

    path = model_file(model_dir, FILES, "LightGBM")
    try:
        booster = lgb.Booster(model_file=str(path))
    except Exception as exc:
        raise ModelFormatError(f"cannot load LightGBM model {path}: {exc}") from None
    # lightgbm's stub types `predict` for every input it takes (files, sparse matrices, …); on the
    # arrays the runtime passes it answers an array.
    predict = cast(ArrayFn, booster.predict)
    return TabularPredictor("lightgbm", booster, predict, None, booster.num_feature())
