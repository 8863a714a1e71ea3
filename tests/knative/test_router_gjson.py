"""The GJSON subset of KServe's router conditions, against what tidwall/gjson answers.

Each expectation is what `gjson.Get(json, path).Exists()` (or the value) gives in Go for the
same document; the conditions are those of KServe's docs, e2e tests and router tests.
"""

from __future__ import annotations

import pytest

from knserve.knative.router.gjson import MISSING, exists, get

SWITCH_INPUT = {
    "source": "client1",
    "instances": [
        {"name": "blue", "intval": 0, "strval": "kserve"},
        {"name": "green", "intval": 1, "strval": "1red-server1"},
    ],
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # KServe's switch sample: only the pattern condition matches this input
        ("[@this].#(source==client)", False),
        ("instances.#(intval>10)", False),
        ("instances.#(strval%*red-server*)", True),
        # variants
        ("[@this].#(source==client1)", True),
        ('[@this].#(source=="client1")', True),
        ("[@this].#(source!=client1)", False),
        ("instances.#(intval>0)", True),
        ("instances.#(intval>=1)", True),
        ("instances.#(intval<0)", False),
        ("instances.#(intval<=0)", True),
        ("instances.#(intval==1)", True),
        ("instances.#(intval=1)", True),
        ("instances.#(strval!%*red*)", True),  # blue's strval has no red
        ("instances.#(strval%kserv?)", True),
        ("instances.#(strval%kserv)", False),
        ("instances.#(name)", True),
        ("instances.#(missing)", False),
        ("source", True),
        ("nosuch", False),
        ("instances.1.name", True),
        ("instances.2.name", False),
        ("instances.#", True),
        ("", False),
        ("sour*", True),
        ("sourc?", True),
        ("[@this].#(decision_picker==ERROR)", False),
        ("instances.#(name==blue).strval", True),
        ("instances.#(name==red).strval", False),
        ("instances.#(intval>5)#", True),  # all matches: an empty array exists
        ("@this", True),
        ("@nosuchmodifier", False),
    ],
)
def test_conditions_exist_as_gjson_says(condition: str, expected: bool) -> None:
    assert exists(SWITCH_INPUT, condition) is expected


def test_values_selected() -> None:
    assert get(SWITCH_INPUT, "instances.#") == 2
    assert get(SWITCH_INPUT, "instances.#.name") == ["blue", "green"]
    assert get(SWITCH_INPUT, "instances.#(intval>=0)#.name") == ["blue", "green"]
    assert get(SWITCH_INPUT, "instances.#(intval>5)#") == []
    assert get(SWITCH_INPUT, "instances.#(strval%*red*)") == SWITCH_INPUT["instances"][1]
    assert get(SWITCH_INPUT, "[@this].#(source==client1).source") == "client1"
    assert get(SWITCH_INPUT, "[source,nosuch,instances.0.name]") == ["client1", "blue"]
    assert get(SWITCH_INPUT, "instances|0|name") == "blue"
    assert get(SWITCH_INPUT, "nosuch.deeper") is MISSING


@pytest.mark.parametrize(
    ("document", "condition", "expected"),
    [
        ({"predictions": [{"label": "dog"}]}, 'predictions.#(label=="dog")', True),
        ({"predictions": [{"label": "cat"}]}, 'predictions.#(label=="dog")', False),
        ({"instances": [{"modelId": "1"}]}, 'instances.#(modelId=="1")', True),
        ({"instances": [{"modelId": 1}]}, 'instances.#(modelId=="1")', True),  # number vs "1"
        ({"instances": [{"modelId": "2"}]}, 'instances.#(modelId=="1")', False),
        ({"predictions": [1, 2]}, "predictions.#(==2)", True),
        ({"predictions": [1, 2]}, "predictions.#(>2)", False),
        ({"predictions": ["a", "b"]}, 'predictions.#(=="b")', True),
        ({"flags": [{"on": True}]}, "flags.#(on==true)", True),
        ({"flags": [{"on": True}]}, "flags.#(on==false)", False),
        ({"flags": [{"on": False}]}, "flags.#(on<true)", True),
        ({"flags": [{"on": "yes"}]}, "flags.#(on==~true)", False),  # "yes" is not a bool word
        ({"flags": [{"on": "t"}]}, "flags.#(on==~true)", True),
        ({"flags": [{"on": 0}]}, "flags.#(on==~false)", True),
        ({"flags": [{"on": None}]}, "flags.#(on==~null)", True),
        ({"flags": [{"on": None}]}, "flags.#(on)", True),  # null exists
        ({"flags": [{"off": 1}]}, "flags.#(on==~*)", False),
        ({"a.b": 1}, "a\\.b", True),
        ({"a": {"b": 1}}, "a\\.b", False),
        ({"x": "not a number"}, "[@this].#(x>0)", True),  # strings compare as strings: "n" > "0"
        ({"x": 5}, "[@this].#(x>abc)", True),  # Go reads "abc" as 0
        ({"nested": [{"tags": ["a", "b"]}]}, 'nested.#(tags.#(=="b"))', True),
        ({"nested": [{"tags": ["a"]}]}, 'nested.#(tags.#(=="b"))', False),
        ([1, 2, 3], "#", True),
        ("text", "#(=text)", False),  # a query on something that is not an array
    ],
)
def test_kserve_test_conditions(document: object, condition: str, expected: bool) -> None:
    assert exists(document, condition) is expected
