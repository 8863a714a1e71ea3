"""Write the reference rows the explainer compares against (a sample of iris)."""

from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris

if __name__ == "__main__":
    x, _ = load_iris(return_X_y=True)
    np.save(Path(__file__).parent / "background.npy", x[::10])
