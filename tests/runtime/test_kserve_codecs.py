"""knserve's wire forms against KServe 0.21's own codecs, run here: the DataFrame KServe builds
from a named-column request (kserve.utils.utils.get_predict_input, InferRequest.as_dataframe) is
the one knserve builds, and KServe's V2 answer for the framework (get_predict_response on what
its sklearnserver and xgbserver compute) is the answer knserve's server sends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from runtime_fixtures import model_settings, serving

from knserve.runtime.protocols import v2
from knserve.runtime.protocols.dataframe import v1_frame

pytest.importorskip("kserve")
pd = pytest.importorskip("pandas")
from kserve.protocol.infer_type import InferRequest as KServeRequest  # noqa: E402
from kserve.utils.utils import get_predict_input, get_predict_response  # noqa: E402

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ORDER = ["petal_width", "sepal_length", "petal_length", "sepal_width"]


def iris() -> tuple[Any, np.ndarray]:
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return pd.DataFrame(x, columns=COLUMNS), y


def pd_body(rows: Any, types: dict[str, str]) -> dict[str, Any]:
    return {
        "id": "k-1",
        "parameters": {"content_type": "pd"},
        "inputs": [
            {"name": c, "shape": [len(rows)], "datatype": types[c], "data": rows[c].tolist()}
            for c in types
        ],
    }


def kserve_request(body: dict[str, Any]) -> KServeRequest:
    raw = orjson.dumps(body)
    return KServeRequest.from_bytes(raw, len(raw), "m")


def test_v2_pd_frames_equal_kserves_as_dataframe() -> None:
    body = pd_body(
        pd.DataFrame({"zone": ["RL", "FV"], "area": [8450, 9600], "x": [5.1, 4.9]}),
        {"zone": "BYTES", "area": "INT64", "x": "FP32"},
    )
    ours = v2.decode_payload(body, "m").as_dataframe()
    theirs = get_predict_input(kserve_request(body))
    pd.testing.assert_frame_equal(ours, theirs)
    assert ours["x"].tolist() == [5.1, 4.9]  # the JSON values, not their float32 rounding


def test_v1_named_column_frames_equal_kserves() -> None:
    rows, _ = iris()
    rows = rows.iloc[:3]
    records = rows.to_dict("records")
    for instances in (
        [{c: rows[c].tolist() for c in COLUMNS}],  # an object of columns
        [records[:2], records[2:]],  # lists of row objects
    ):
        theirs = get_predict_input({"instances": instances})
        pd.testing.assert_frame_equal(v1_frame(instances), theirs.reset_index(drop=True))
    # one object of scalars per row: KServe's pandas call refuses it; knserve reads one row each
    with pytest.raises(ValueError, match="scalar values"):
        get_predict_input({"instances": records})
    pd.testing.assert_frame_equal(v1_frame(records), rows.reset_index(drop=True))


def kserve_outputs(request: KServeRequest, result: np.ndarray) -> list[dict[str, Any]]:
    response, _ = get_predict_response(request, result, "m").to_rest()
    return [{k: o[k] for k in ("name", "datatype", "shape", "data")} for o in response["outputs"]]


def our_outputs(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: o[k] for k in ("name", "datatype", "shape", "data")} for o in answer["outputs"]]


async def test_sklearn_v2_answers_equal_kserves(tmp_path: Path) -> None:
    import joblib
    from sklearn.linear_model import LogisticRegression

    frame, y = iris()
    model = LogisticRegression(max_iter=1000).fit(frame, y)
    joblib.dump(model, tmp_path / "model.joblib")
    body = pd_body(frame.iloc[::9][ORDER], dict.fromkeys(ORDER, "FP64"))
    request = kserve_request(body)
    # sklearnserver/model.py SKLearnModel.predict: predict on get_predict_input's frame
    # (sklearn wants the fitted column order, so KServe's client must send that order)
    expected = kserve_outputs(request, model.predict(get_predict_input(request)[COLUMNS]))
    async with serving(model_settings("m", tmp_path)) as (client, _):
        answer = (await client.post("/v2/models/m/infer", json=body)).json()
    assert answer["id"] == "k-1"
    assert our_outputs(answer) == expected


async def test_xgboost_v1_and_v2_answers_equal_kserves(tmp_path: Path) -> None:
    xgb = pytest.importorskip("xgboost")
    frame, y = iris()
    model = xgb.XGBClassifier(n_estimators=6, max_depth=3).fit(frame.values, y)
    model.save_model(tmp_path / "model.json")
    booster = xgb.Booster(model_file=str(tmp_path / "model.json"))
    rows = frame.iloc[::11]
    tensor = {"name": "input-0", "shape": list(rows.shape), "datatype": "FP32"}
    tensor_body = {"inputs": [{**tensor, "data": rows.values.tolist()}]}
    instances = rows.values.tolist()

    def kserve_predict(payload: Any) -> np.ndarray:
        # xgbserver/model.py XGBoostModel.predict: Booster.predict on a DMatrix of the input
        return booster.predict(xgb.DMatrix(get_predict_input(payload)))

    request = kserve_request(tensor_body)
    expected_v2 = kserve_outputs(request, kserve_predict(request))
    v1_payload = {"instances": instances}
    expected_v1 = get_predict_response(v1_payload, kserve_predict(v1_payload), "m")
    async with serving(model_settings("m", tmp_path)) as (client, _):
        v2_answer = (await client.post("/v2/models/m/infer", json=tensor_body)).json()
        v1_answer = (await client.post("/v1/models/m:predict", json=v1_payload)).json()
    assert our_outputs(v2_answer) == expected_v2
    assert v1_answer == expected_v1
