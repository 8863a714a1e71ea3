"""Real models trained in the tests, one per format, saved the way each framework saves them.

The training functions are plain so that benchmarks and other tests can call them; the fixtures
are session-scoped because training (torch, xgboost) costs more than the tests that use them.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest


def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x, y


def train_sklearn_iris(folder: Path, filename: str = "model.joblib") -> tuple[Any, np.ndarray]:
    """LogisticRegression(max_iter=1000) on iris, saved with joblib (or pickle for .pkl)."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    model = LogisticRegression(max_iter=1000).fit(x, y)
    folder.mkdir(parents=True, exist_ok=True)
    if filename.endswith(".joblib"):
        joblib.dump(model, folder / filename)
    else:
        with (folder / filename).open("wb") as fh:
            pickle.dump(model, fh)
    return model, x


def train_xgboost(folder: Path, filename: str = "model.json") -> tuple[Any, np.ndarray]:
    """An XGBClassifier (scikit-learn API) on iris, saved with save_model."""
    import xgboost as xgb

    x, y = iris()
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3).fit(x, y)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_model(folder / filename)
    return model, x


def train_xgboost_booster(folder: Path) -> tuple[Any, np.ndarray]:
    """A native Booster (multi:softprob) on iris, saved as model.bst."""
    import xgboost as xgb

    x, y = iris()
    booster = xgb.train(
        {"objective": "multi:softprob", "num_class": 3, "max_depth": 3},
        xgb.DMatrix(x, label=y),
        num_boost_round=5,
    )
    folder.mkdir(parents=True, exist_ok=True)
    booster.save_model(folder / "model.bst")
    return booster, x


def train_lightgbm(folder: Path, filename: str = "model.txt") -> tuple[Any, np.ndarray]:
    """A LightGBM multiclass booster on iris, saved in LightGBM's text format."""
    import lightgbm as lgb

    x, y = iris()
    model = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(x, y)
    folder.mkdir(parents=True, exist_ok=True)
    model.booster_.save_model(str(folder / filename))
    return model.booster_, x


def train_onnx(folder: Path) -> tuple[Any, np.ndarray]:
    """The iris LogisticRegression converted with skl2onnx (tensor outputs, no ZipMap)."""
    from skl2onnx import to_onnx

    model, x = train_sklearn_iris(folder / "_sk")
    onx = to_onnx(model, x[:1].astype(np.float32), options={id(model): {"zipmap": False}})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(onx.SerializeToString())
    return model, x


def train_onnx_two_inputs(folder: Path) -> None:
    """A hand-built ONNX graph with two inputs and two outputs: sum = a + b, prod = a * b."""
    import onnx
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])
    total = helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 3])
    prod = helper.make_tensor_value_info("prod", TensorProto.FLOAT, ["N", 3])
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["a", "b"], ["sum"]),
            helper.make_node("Mul", ["a", "b"], ["prod"]),
        ],
        "two",
        [a, b],
        [total, prod],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")


def train_torch_mlp(folder: Path, width: int = 64, features: int = 4) -> tuple[Any, np.ndarray]:
    """A small MLP fitted on iris for a few steps, saved as TorchScript."""
    import torch

    torch.manual_seed(0)
    x, y = iris()
    layers = torch.nn.Sequential(
        torch.nn.Linear(features, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 3),
    )
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    optimiser = torch.optim.Adam(layers.parameters(), lr=0.01)
    for _ in range(50):
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(layers(xt), yt).backward()
        optimiser.step()
    layers.eval()
    scripted = torch.jit.script(layers)
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.save(scripted, str(folder / "model.pt"))
    return scripted, x.astype(np.float32)


@pytest.fixture(scope="session")
def sklearn_iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with model.joblib: LogisticRegression(max_iter=1000) fitted on iris."""
    folder = tmp_path_factory.mktemp("sklearn-iris")
    train_sklearn_iris(folder)
    return folder


@pytest.fixture(scope="session")
def xgboost_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("xgboost")
    train_xgboost(folder)
    return folder


@pytest.fixture(scope="session")
def lightgbm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lightgbm")
    train_lightgbm(folder)
    return folder


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("onnx")
    train_onnx(folder)
    return folder


@pytest.fixture(scope="session")
def torch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("torch")
    train_torch_mlp(folder)
    return folder
