"""Every model format loads from its files and predicts exactly what the framework predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model_fixtures import (
    train_lightgbm,
    train_onnx,
    train_onnx_two_inputs,
    train_sklearn_iris,
    train_torch_mlp,
    train_xgboost,
    train_xgboost_booster,
)

from knserve.runtime.formats import ModelFormatError, detect_format, load_predictor


@pytest.mark.parametrize("filename", ["model.joblib", "model.pkl"])
def test_sklearn_predicts_like_sklearn(tmp_path: Path, filename: str) -> None:
    model, x = train_sklearn_iris(tmp_path, filename)
    assert detect_format(tmp_path) == "sklearn"
    predictor = load_predictor(tmp_path)
    assert predictor.inputs[0].shape == (-1, 4)
    assert predictor.outputs[0].datatype == "INT64"
    (got,) = predictor.predict([x])
    np.testing.assert_array_equal(got, model.predict(x))
    (proba,) = predictor.predict([x[:3]], ["predict_proba"])
    np.testing.assert_array_equal(proba, model.predict_proba(x[:3]))


@pytest.mark.parametrize("filename", ["model.json", "model.ubj", "model.bst"])
def test_xgboost_classifier_answers_as_kserve_and_its_classes(
    tmp_path: Path, filename: str
) -> None:
    import xgboost as xgb

    model, x = train_xgboost(tmp_path, filename)
    assert detect_format(tmp_path) == "xgboost"
    predictor = load_predictor(tmp_path)
    # output-0 is KServe's xgbserver answer (xgbserver/model.py): Booster.predict on a DMatrix
    first = predictor.outputs[0]
    assert (first.name, first.datatype, first.shape) == ("output-0", "FP32", (-1, 3))
    (got,) = predictor.predict([x])
    np.testing.assert_array_equal(got, model.get_booster().predict(xgb.DMatrix(x)))
    classes, proba = predictor.predict([x], ["predict", "predict_proba"])
    np.testing.assert_array_equal(classes, model.predict(x))
    np.testing.assert_array_equal(proba, model.predict_proba(x))


def test_xgboost_native_booster_predicts_like_booster_predict(tmp_path: Path) -> None:
    import xgboost as xgb

    booster, x = train_xgboost_booster(tmp_path)
    assert detect_format(tmp_path) == "xgboost"
    (got,) = load_predictor(tmp_path).predict([x])
    np.testing.assert_allclose(got, booster.predict(xgb.DMatrix(x)), rtol=1e-6)


@pytest.mark.parametrize("filename", ["model.txt", "model.bst"])
def test_lightgbm_predicts_like_booster_predict(tmp_path: Path, filename: str) -> None:
    booster, x = train_lightgbm(tmp_path, filename)
    assert detect_format(tmp_path) == "lightgbm"
    (got,) = load_predictor(tmp_path).predict([x])
    np.testing.assert_array_equal(got, booster.predict(x))


def test_onnx_takes_inputs_and_outputs_from_the_graph(tmp_path: Path) -> None:
    import onnxruntime as ort

    model, x = train_onnx(tmp_path)
    predictor = load_predictor(tmp_path)
    assert [(i.name, i.datatype, i.shape) for i in predictor.inputs] == [("X", "FP32", (-1, 4))]
    assert [o.name for o in predictor.outputs] == ["label", "probabilities"]
    label, proba = predictor.predict([x])
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"X": x.astype(np.float32)})
    np.testing.assert_array_equal(label, expected[0])
    np.testing.assert_array_equal(proba, expected[1])
    np.testing.assert_array_equal(label, model.predict(x))


def test_onnx_with_two_inputs_and_a_chosen_output(tmp_path: Path) -> None:
    train_onnx_two_inputs(tmp_path)
    predictor = load_predictor(tmp_path)
    assert [i.name for i in predictor.inputs] == ["a", "b"]
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.full((2, 3), 2.0, dtype=np.float32)
    (prod,) = predictor.predict([a, b], ["prod"])
    np.testing.assert_array_equal(prod, a * b)


def test_torchscript_predicts_like_the_module(tmp_path: Path) -> None:
    import torch

    module, x = train_torch_mlp(tmp_path)
    assert detect_format(tmp_path) == "pytorch"
    (got,) = load_predictor(tmp_path).predict([x])
    with torch.inference_mode():
        expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(got, expected)


def test_custom_model_folder_is_detected(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text("class M: pass\n")
    (tmp_path / "model.joblib").write_bytes(b"")
    assert detect_format(tmp_path) == "custom"


def test_an_empty_folder_says_what_files_are_expected(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    with pytest.raises(
        ModelFormatError, match=r"no model file in .*found: README.md.*model.joblib"
    ):
        detect_format(tmp_path)


def test_a_folder_with_two_formats_is_ambiguous(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"x")
    (tmp_path / "model.onnx").write_bytes(b"x")
    with pytest.raises(ModelFormatError, match="several formats.*--model-format"):
        detect_format(tmp_path)


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="does not exist"):
        detect_format(tmp_path / "nope")


@pytest.mark.parametrize(
    ("filename", "fmt"),
    [
        ("model.joblib", "sklearn"),
        ("model.json", "xgboost"),
        ("model.txt", "lightgbm"),
        ("model.onnx", "onnx"),
        ("model.pt", "pytorch"),
    ],
)
def test_a_corrupt_file_names_the_file_and_the_reason(
    tmp_path: Path, filename: str, fmt: str
) -> None:
    (tmp_path / filename).write_bytes(b"\x00not a model\xff")
    with pytest.raises(ModelFormatError, match=f"cannot load .*{filename}"):
        load_predictor(tmp_path, fmt)


def test_an_unknown_format_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="known formats: sklearn, xgboost"):
        load_predictor(tmp_path, "tensorflow")
