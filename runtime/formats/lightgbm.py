"""LightGBM models (`model.txt`, or `model.bst` holding LightGBM's text format).

`output-0` is what KServe's lgbserver answers (lgbserver/model.py, LightGBMModel.predict):
`Booster.predict`, FP64 — probabilities for a classifier (`[N, classes]` when multiclass), values
for a regressor. `predict` names the same answer, as earlier knserve releases called it.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

from knserve.runtime.formats import ModelFormatError, model_file
from knserve.runtime.formats.tabular import ArrayFn, TabularOutput, TabularPredictor

FILES = ("model.txt", "model.bst")


def load(model_dir: Path) -> TabularPredictor:
    import lightgbm as lgb

    path = model_file(model_dir, FILES, "LightGBM")
    try:
        booster = lgb.Booster(model_file=str(path))
    except Exception as exc:
        raise ModelFormatError(f"cannot load LightGBM model {path}: {exc}") from None
    # lightgbm's stub types `predict` for every input it takes (files, sparse matrices, …); on the
    # arrays and frames the runtime passes it answers an array.
    predict = cast(ArrayFn, booster.predict)
    per_row = booster.num_model_per_iteration()
    shape = (-1, per_row) if per_row > 1 else (-1,)
    n_features = booster.num_feature()
    # A booster fitted on bare arrays names its features Column_0, Column_1, …: no names at all.
    names: list[str] | None = booster.feature_name()
    if names == [f"Column_{i}" for i in range(n_features)]:
        names = None
    return TabularPredictor(
        "lightgbm",
        booster,
        [
            TabularOutput("output-0", "FP64", shape, predict),
            TabularOutput("predict", "FP64", shape, predict),
        ],
        n_features,
        names,
        aliases=_lightgbm_name,
    )


def _lightgbm_name(column: str) -> str:
    # LightGBM stores a pandas column "petal length (cm)" as "petal_length_(cm)"
    return column.replace(" ", "_")
