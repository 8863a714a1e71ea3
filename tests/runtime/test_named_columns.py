"""KServe's named-column requests: V1 instances given as objects and V2 `content_type: pd` reach
a model fitted on a DataFrame as a DataFrame with its columns, whatever order the client sent.

KServe's sklearnserver, xgbserver and lgbserver read both forms with
kserve/utils/utils.py get_predict_input (V1: each instance a frame, stacked; V2: "pd" calls
kserve/protocol/infer_type.py InferRequest.as_dataframe, one column per input).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from runtime_fixtures import model_settings, serving

pd = pytest.importorskip("pandas")

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_frame() -> tuple[Any, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return pd.DataFrame(x, columns=COLUMNS), y


def records(frame: Any, order: list[str]) -> list[dict[str, Any]]:
    """Rows as JSON objects with their keys in `order` (not the order the model was fitted on)."""
    return [{c: row[c] for c in order} for row in frame.to_dict("records")]


def pd_body(frame: Any, order: list[str], datatypes: dict[str, str]) -> dict[str, Any]:
    """A V2 request with one input per column, request-level content_type pd."""
    inputs = []
    for c in order:
        values = frame[c].tolist()
        inputs.append({"name": c, "shape": [len(values)], "datatype": datatypes[c], "data": values})
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


SHUFFLED = ["petal_width", "sepal_length", "petal_length", "sepal_width"]


@pytest.fixture(scope="module")
def sklearn_frame_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    import joblib
    from sklearn.linear_model import LogisticRegression

    frame, y = iris_frame()
    model = LogisticRegression(max_iter=1000).fit(frame, y)
    folder = tmp_path_factory.mktemp("sk-frame")
    joblib.dump(model, folder / "model.joblib")
    return folder, model, frame


async def test_v1_objects_reach_sklearn_in_its_column_order(sklearn_frame_model) -> None:  # type: ignore[no-untyped-def]
    folder, model, frame = sklearn_frame_model
    rows = frame.iloc[::10]
    expected = model.predict(rows).tolist()
    async with serving(model_settings("iris", folder)) as (client, _):
        # one object per row, keys shuffled: the model's fitted order decides
        one_per_row = {"instances": records(rows, SHUFFLED)}
        response = await client.post("/v1/models/iris:predict", json=one_per_row)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": expected}
        # KServe's own forms: an object of columns, and a list of row objects, per instance
        columns = {c: rows[c].tolist() for c in SHUFFLED}
        for instances in ([columns], [records(rows, SHUFFLED)]):
            answer = await client.post("/v1/models/iris:predict", json={"instances": instances})
            assert answer.json() == {"predictions": expected}, instances
        # "inputs" is V1's other name for the instances, as KServe reads it
        aliased = await client.post(
            "/v1/models/iris:predict", json={"inputs": records(rows, SHUFFLED)}
        )
        assert aliased.json() == {"predictions": expected}


async def test_v1_objects_missing_a_column_or_not_a_table_say_what_to_send(
    sklearn_frame_model,
) -> None:  # type: ignore[no-untyped-def]
    folder, model, frame = sklearn_frame_model
    rows = records(frame.iloc[:2], COLUMNS)
    async with serving(model_settings("iris", folder)) as (client, _):
        extra = [{**r, "note": "ignored"} for r in rows]
        answer = await client.post("/v1/models/iris:predict", json={"instances": extra})
        assert answer.json()["predictions"] == model.predict(frame.iloc[:2]).tolist()
        lacking = [{k: v for k, v in r.items() if k != "petal_width"} for r in rows]
        response = await client.post("/v1/models/iris:predict", json={"instances": lacking})
        assert response.status_code == 400
        assert "no column 'petal_width'" in response.json()["error"]
        mixed = await client.post("/v1/models/iris:predict", json={"instances": [rows[0], 5]})
        assert mixed.status_code == 400
        assert "instances[1] is a number" in mixed.json()["error"]


async def test_v2_content_type_pd_is_a_table_of_the_inputs(sklearn_frame_model) -> None:  # type: ignore[no-untyped-def]
    folder, model, frame = sklearn_frame_model
    rows = frame.iloc[::7]
    expected = model.predict(rows)
    fp32 = dict.fromkeys(COLUMNS, "FP32")
    async with serving(model_settings("iris", folder)) as (client, _):
        body = pd_body(rows, SHUFFLED, fp32)
        response = await client.post("/v2/models/iris/infer", json=body)
        assert response.status_code == 200, response.text
        (out,) = response.json()["outputs"]
        # KServe's get_predict_response: one output "output-0", its datatype from the array
        assert (out["name"], out["datatype"], out["shape"]) == ("output-0", "INT64", [len(rows)])
        assert out["data"] == expected.tolist()
        # the columns hold the JSON values as sent (float64 5.1 although declared FP32), as
        # KServe's as_dataframe builds them: probabilities equal to the model's on the table
        proba = await client.post(
            "/v2/models/iris/infer", json={**body, "outputs": [{"name": "predict_proba"}]}
        )
        (probabilities,) = proba.json()["outputs"]
        np.testing.assert_array_equal(
            np.reshape(probabilities["data"], probabilities["shape"]), model.predict_proba(rows)
        )
        short = pd_body(rows, SHUFFLED, fp32)
        short["inputs"][1]["data"] = short["inputs"][1]["data"][:2]
        short["inputs"][1]["shape"] = [2]
        response = await client.post("/v2/models/iris/infer", json=short)
        assert response.status_code == 400
        assert "all have the same length" in response.json()["error"]


@pytest.fixture(scope="module")
def mixed_type_model(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A pipeline over a string column and numbers, as KServe's mixed-type sklearn sample."""
    import joblib
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "zone": rng.choice(["RL", "RM", "FV"], 200),
            "area": rng.integers(2000, 20000, 200),
            "quality": rng.integers(1, 10, 200),
        }
    )
    price = (
        frame["area"] * 3.5
        + frame["quality"] * 1000
        + frame["zone"].map({"RL": 0, "RM": 5000, "FV": 9000})
    )
    encode = make_column_transformer(
        (OneHotEncoder(), ["zone"]), remainder="passthrough", verbose_feature_names_out=False
    )
    model = make_pipeline(encode, Ridge()).fit(frame, price)
    folder = tmp_path_factory.mktemp("mixed")
    joblib.dump(model, folder / "model.joblib")
    return folder, model, frame


async def test_strings_and_numbers_in_one_table_v1_and_v2(mixed_type_model) -> None:  # type: ignore[no-untyped-def]
    folder, model, frame = mixed_type_model
    rows = frame.iloc[:6]
    expected = model.predict(rows)
    order = ["quality", "zone", "area"]
    async with serving(model_settings("house", folder)) as (client, _):
        v1 = await client.post("/v1/models/house:predict", json={"instances": records(rows, order)})
        assert v1.status_code == 200, v1.text
        np.testing.assert_array_equal(v1.json()["predictions"], expected)
        types = {"zone": "BYTES", "area": "INT64", "quality": "INT32"}
        v2 = await client.post("/v2/models/house/infer", json=pd_body(rows, order, types))
        assert v2.status_code == 200, v2.text
        (out,) = v2.json()["outputs"]
        assert (out["name"], out["datatype"]) == ("output-0", "FP64")
        np.testing.assert_array_equal(out["data"], expected)


async def test_a_pd_request_with_binary_tensors_from_tritons_client(mixed_type_model) -> None:  # type: ignore[no-untyped-def]
    """Triton's client sends tensors as binary data by default; its columns are the same table."""
    http = pytest.importorskip("tritonclient.http")
    folder, model, frame = mixed_type_model
    rows = frame.iloc[10:15]
    inputs = []
    for name, datatype, values in (
        ("zone", "BYTES", rows["zone"].to_numpy(dtype=object)),
        ("area", "INT64", rows["area"].to_numpy()),
        ("quality", "INT64", rows["quality"].to_numpy()),
    ):
        tensor = http.InferInput(name, [len(rows)], datatype)
        tensor.set_data_from_numpy(values)  # binary_data=True by default
        inputs.append(tensor)
    body, header_length = http.InferenceServerClient.generate_request_body(
        inputs, parameters={"content_type": "pd"}
    )
    assert header_length is not None  # the tensors really travel as binary data
    headers = {"Inference-Header-Content-Length": str(header_length)}
    async with serving(model_settings("house", folder)) as (client, _):
        response = await client.post("/v2/models/house/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    # asking for no output, Triton's client wants them all back as binary data too
    result = http.InferenceServerClient.parse_response_body(
        response.content, header_length=int(response.headers["inference-header-content-length"])
    )
    np.testing.assert_array_equal(result.as_numpy("output-0"), model.predict(rows))


async def test_xgboost_fitted_on_a_frame_answers_kserves_booster_predict(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    frame, y = iris_frame()
    model = xgb.XGBClassifier(n_estimators=8, max_depth=3).fit(frame, y)
    model.save_model(tmp_path / "model.json")
    rows = frame.iloc[::15]
    # KServe's xgbserver (xgbserver/model.py, XGBoostModel.predict): Booster.predict on a DMatrix
    kserve_answer = model.get_booster().predict(xgb.DMatrix(rows))
    async with serving(model_settings("xgb", tmp_path)) as (client, _):
        v1 = await client.post(
            "/v1/models/xgb:predict", json={"instances": records(rows, SHUFFLED)}
        )
        assert v1.status_code == 200, v1.text
        np.testing.assert_array_equal(
            np.asarray(v1.json()["predictions"], np.float32), kserve_answer
        )
        body = pd_body(rows, SHUFFLED, dict.fromkeys(COLUMNS, "FP64"))
        body["outputs"] = [{"name": "output-0"}, {"name": "predict"}]
        v2 = await client.post("/v2/models/xgb/infer", json=body)
        assert v2.status_code == 200, v2.text
        first, classes = v2.json()["outputs"]
        assert (first["datatype"], first["shape"]) == ("FP32", [len(rows), 3])
        np.testing.assert_array_equal(
            np.reshape(np.asarray(first["data"], np.float32), first["shape"]), kserve_answer
        )
        assert classes["data"] == model.predict(rows).tolist()


async def test_lightgbm_frame_columns_with_spaces(tmp_path: Path) -> None:
    lgb = pytest.importorskip("lightgbm")
    from sklearn.datasets import load_iris

    frame, y = load_iris(return_X_y=True, as_frame=True)  # names like "petal length (cm)"
    booster = lgb.LGBMClassifier(n_estimators=10, verbose=-1).fit(frame, y).booster_
    booster.save_model(str(tmp_path / "model.txt"))
    rows = frame.iloc[::20]
    order = list(reversed(frame.columns))
    async with serving(model_settings("lgb", tmp_path)) as (client, _):
        v1 = await client.post("/v1/models/lgb:predict", json={"instances": records(rows, order)})
        assert v1.status_code == 200, v1.text
        np.testing.assert_array_equal(v1.json()["predictions"], booster.predict(rows))


async def test_a_tensor_model_refuses_named_columns(tmp_path: Path) -> None:
    from model_fixtures import train_onnx

    _, x = train_onnx(tmp_path)
    async with serving(model_settings("onnx", tmp_path)) as (client, _):
        row = dict(zip(COLUMNS, x[0].tolist(), strict=True))
        response = await client.post("/v1/models/onnx:predict", json={"instances": [row]})
        assert response.status_code == 400
        assert "takes tensors, not named columns" in response.json()["error"]


async def test_strings_reach_a_text_pipeline_as_a_list(tmp_path: Path) -> None:
    """V1 instances that are strings and a V2 BYTES input reach the model as a list of str, as
    KServe's get_predict_input hands them over."""
    import joblib
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["a fine film", "great acting", "loved it", "dull plot", "awful film", "hated it"]
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(texts, [1, 1, 1, 0, 0, 0])
    joblib.dump(model, tmp_path / "model.joblib")
    asked = ["a great film", "a dull film", "hated the acting"]
    expected = model.predict(asked).tolist()
    async with serving(model_settings("reviews", tmp_path)) as (client, _):
        v1 = await client.post("/v1/models/reviews:predict", json={"instances": asked})
        assert v1.status_code == 200, v1.text
        assert v1.json()["predictions"] == expected
        tensor = {"name": "text", "shape": [len(asked)], "datatype": "BYTES", "data": asked}
        v2 = await client.post("/v2/models/reviews/infer", json={"inputs": [tensor]})
        assert v2.status_code == 200, v2.text
        assert v2.json()["outputs"][0]["data"] == expected
