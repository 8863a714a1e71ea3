"""Write what AnchorTabular is fitted on: the training rows (iris) and the features' names."""

import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris

if __name__ == "__main__":
    here = Path(__file__).parent
    iris = load_iris()
    np.save(here / "train.npy", iris.data)
    config = {
        "feature_names": ["sepal length", "sepal width", "petal length", "petal width"],
        # {column: [name of value 0, name of value 1, ...]} for ordinal-encoded columns; iris has none.
        "categorical_names": {},
        "threshold": 0.95,
        "seed": 0,
    }
    (here / "anchors.json").write_text(json.dumps(config, indent=2) + "\n")
