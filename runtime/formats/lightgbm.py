"""LightGBM models (`model.txt`, or `model.bst` holding LightGBM's text format).

Served with `Booster.predict`, as KServe's lgbserver does: probabilities for a classifier, values
for a regressor.
"""

from __future__ import annotations

from pathlib import Path

from knserve.runtime.formats import ModelFormatError, model_file
from knserve.runtime.formats.tabular import TabularPredictor

FILES = ("model.txt", "model.bst")


def load(model_dir: Path) -> TabularPredictor:
    import lightgbm as lgb

    path = model_file(model_dir, FILES, "LightGBM")
    try:
        booster = lgb.Booster(model_file=str(path))
    except Exception as exc:
        raise ModelFormatError(f"cannot load LightGBM model {path}: {exc}") from None
    return TabularPredictor("lightgbm", booster, booster.predict, None, booster.num_feature())
