"""Fit the example model (iris, bundled with scikit-learn) and save it as model.joblib."""

from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

if __name__ == "__main__":
    x, y = load_iris(return_X_y=True)
    joblib.dump(LogisticRegression(max_iter=1000).fit(x, y), Path(__file__).parent / "model.joblib")
