"""AnchorTabularExplainer refuses bad input with the fix, before it needs alibi (so these run here).

alibi needs NumPy < 2 and is never in knserve's own environment; the explanations themselves are
checked against alibi in the anchors explainer function's environment
(tests/functions/test_anchors_explainer.py).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from knserve.runtime.explainers import AnchorTabularExplainer, ExplainerError

NAMES = ["sepal length", "sepal width", "petal length", "petal width"]
TRAIN = np.arange(24, dtype=float).reshape(6, 4) % 3  # codes 0, 1, 2 in every column


def never_called(x: np.ndarray) -> np.ndarray:
    raise AssertionError("the predictor is not called while the input is checked")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param(
            {"training_data": [1.0, 2.0]},
            r"non-empty 2-D array .* got shape \(2,\)",
            id="training-1-d",
        ),
        pytest.param(
            {"training_data": np.zeros((0, 4))},
            r"non-empty 2-D array .* \(0, 4\)",
            id="training-empty",
        ),
        pytest.param(
            {"training_data": [["a", "b", "c", "d"]]},
            "numeric rows .*encode categorical",
            id="training-not-numeric",
        ),
        pytest.param(
            {"training_data": np.full((2, 4), np.nan)},
            "NaN or infinite values; impute",
            id="training-nan",
        ),
        pytest.param(
            {"feature_names": NAMES[:3]},
            "feature_names has 3 names and training_data has 4 columns; give one name per column",
            id="names-count",
        ),
        pytest.param(
            {"feature_names": ["a", "b", "a", "c"]},
            "feature_names repeats 'a'",
            id="names-repeated",
        ),
        pytest.param(
            {"feature_names": "abcd"}, "must be a list of non-empty strings", id="names-a-string"
        ),
        pytest.param(
            {"categorical_names": {"colour": ["red"]}},
            "key 'colour', which is neither a column index nor a feature name; the features are 'sepal length'",
            id="categorical-unknown-key",
        ),
        pytest.param(
            {"categorical_names": {7: ["a", "b", "c"]}},
            r"column 7, but there are 4 columns \(0 to 3\)",
            id="categorical-out-of-range",
        ),
        pytest.param(
            {"categorical_names": {0: []}},
            r"must list the names of the column's values",
            id="categorical-no-values",
        ),
        pytest.param(
            {"categorical_names": {"petal width": ["a", "b"]}},
            r"training_data column 3 \(petal width\) is categorical with 2 values \(codes 0 to 1\), but holds 2",
            id="categorical-code-too-big",
        ),
        pytest.param(
            {"threshold": 0},
            r"threshold is 0, it must be a precision in \(0, 1\]",
            id="threshold-zero",
        ),
        pytest.param({"threshold": 1.5}, "threshold is 1.5", id="threshold-above-one"),
        pytest.param({"threshold": "0.95"}, "threshold is '0.95'", id="threshold-a-string"),
        pytest.param({"seed": 1.5}, "seed is 1.5, it must be an integer", id="seed-float"),
    ],
)
def test_bad_arguments_are_refused_with_what_to_fix(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {"training_data": TRAIN, "feature_names": NAMES, **kwargs}
    training_data = arguments.pop("training_data")
    with pytest.raises(ExplainerError, match=message):
        AnchorTabularExplainer(never_called, training_data, **arguments)


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(3, id="index"),
        pytest.param("3", id="json-key"),
        pytest.param("petal width", id="name"),
    ],
)
def test_a_categorical_column_is_named_by_index_json_key_or_feature_name(key: int | str) -> None:
    # Only column 3 holds codes of two values: naming any other column fails the codes check, so
    # the only complaint left is the missing library (or none, where alibi is installed).
    train = np.column_stack([np.full((4, 3), 5.5), [0, 1, 1, 0]])
    try:
        explainer = AnchorTabularExplainer(
            never_called, train, feature_names=NAMES, categorical_names={key: ["no", "yes"]}
        )
    except ExplainerError as exc:
        assert "needs alibi" in str(exc)
    else:
        assert explainer.categorical_names == {3: ["no", "yes"]}


@pytest.mark.skipif(
    importlib.util.find_spec("alibi") is not None, reason="alibi is installed in this environment"
)
def test_without_alibi_the_error_says_where_it_runs() -> None:
    with pytest.raises(ExplainerError) as caught:
        AnchorTabularExplainer(never_called, TRAIN, feature_names=NAMES)
    message = str(caught.value)
    assert "AnchorTabular needs alibi" in message
    assert "knserve func create -t anchors-explainer" in message
    assert "knserve[alibi]" in message and "NumPy < 2" in message
