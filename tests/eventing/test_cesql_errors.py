"""CESQL v1 evaluation errors (fail fast), as a table after the spec's TCK, and their messages."""

from __future__ import annotations

import pytest

from knserve.eventing.cesql import (
    CESQLEvaluationError,
    parse,
)

EVENT = {"specversion": "1.0", "id": "myId", "source": "/src", "type": "com.example.created"}


def value(expression: str, **extra: str) -> object:
    return parse(expression).value({**EVENT, **extra})


# ---------------------------------------------------------------------------------------------
# Evaluation errors (fail fast): (expression, extra attributes, spec error kind)

ERRORS = [
    ("missing", {}, "missingAttribute"),
    ("missing = 2", {}, "missingAttribute"),
    ("missing != 2", {}, "missingAttribute"),
    ("missing <> 2", {}, "missingAttribute"),
    ("missing <= 2", {}, "missingAttribute"),
    ("-missing", {}, "missingAttribute"),
    ("NOT missing", {}, "missingAttribute"),
    ("missing / 0", {}, "missingAttribute"),  # the attribute, not the division, is the error
    ("missing % 0", {}, "missingAttribute"),
    ("1 / missing", {}, "missingAttribute"),
    ("myext LIKE 'custom%'", {}, "missingAttribute"),
    ("myext = 'customext'", {}, "missingAttribute"),
    (
        "type LIKE 'example.%' AND myext LIKE 'custom%'",
        {"type": "example.event"},
        "missingAttribute",
    ),
    ("id LIKE 'my%' OR myext LIKE '%ext'", {"id": "notmyId"}, "missingAttribute"),
    ("missing IN ('a')", {}, "missingAttribute"),
    ("'a' IN ('b', missing)", {}, "missingAttribute"),
    ("LENGTH(missing)", {}, "missingAttribute"),
    ("TRUE XOR missing", {}, "missingAttribute"),  # XOR does not short-circuit
    ("5 / 0", {}, "math"),
    ("5 % 0", {}, "math"),
    ("true and (1 != 1 / 0)", {}, "math"),
    ("false or (1 != 1 / 0)", {}, "math"),
    ("2147483647 + 1", {}, "math"),
    ("-2147483648 - 1", {}, "math"),
    ("65536 * 65536", {}, "math"),
    ("-(-2147483648)", {}, "math"),
    ("-2147483648 / -1", {}, "math"),
    ("ABS(-2147483648)", {}, "math"),
    ("INT('ABC')", {}, "cast"),
    ("INT('1.5')", {}, "cast"),
    ("INT('')", {}, "cast"),
    ("INT(' 1')", {}, "cast"),
    ("INT('2147483648')", {}, "cast"),
    ("BOOL('ABC')", {}, "cast"),
    ("BOOL('1')", {}, "cast"),
    ("NOT 'yes'", {}, "cast"),
    ("-'abc'", {}, "cast"),
    ("'abc' + 1", {}, "cast"),
    ("sequence = 5", {"sequence": "five"}, "cast"),
    ("flag AND TRUE", {"flag": "maybe"}, "cast"),
    ("hop < 10", {"hop": "x"}, "cast"),
    ("5 IN ('a', 5)", {}, "cast"),  # 'a' cannot be cast to the left side's Integer
    ("NOT type LIKE 'com.%'", {}, "cast"),  # (NOT type) LIKE ...: the spec's precedence
    ("LEFT('abc', -2)", {}, "functionEvaluation"),
    ("RIGHT('abc', -2)", {}, "functionEvaluation"),
    ("SUBSTRING('abcdef', 10)", {}, "functionEvaluation"),
    ("SUBSTRING('abcdef', -10)", {}, "functionEvaluation"),
    ("SUBSTRING('abcdef', 10, 10)", {}, "functionEvaluation"),
    ("SUBSTRING('abcdef', -10, 10)", {}, "functionEvaluation"),
    ("SUBSTRING('abcdef', 7)", {}, "functionEvaluation"),
    ("SUBSTRING('abcdef', 2, -1)", {}, "functionEvaluation"),
    ("SUBSTRING('', 1)", {}, "functionEvaluation"),
]


@pytest.mark.parametrize(("expression", "attrs", "kind"), ERRORS)
def test_errors(expression: str, attrs: dict[str, str], kind: str) -> None:
    with pytest.raises(CESQLEvaluationError) as caught:
        value(expression, **attrs)
    assert caught.value.kind == kind
    # As a filter, any error means the event does not pass.
    assert parse(expression).evaluate({**EVENT, **attrs}) is False


def test_error_messages_name_the_problem() -> None:
    with pytest.raises(CESQLEvaluationError, match="the event has no 'myext' attribute"):
        value("myext = 'x'")
    with pytest.raises(CESQLEvaluationError, match="cannot cast 'five' to an Integer"):
        value("sequence = 5", sequence="five")
    with pytest.raises(CESQLEvaluationError, match="cannot cast 'maybe' to a Boolean"):
        value("NOT flag", flag="maybe")
    with pytest.raises(CESQLEvaluationError, match="division by zero"):
        value("1 % 0")
    with pytest.raises(CESQLEvaluationError, match="overflows a 32-bit Integer"):
        value("2147483647 * 2")
    with pytest.raises(CESQLEvaluationError, match="position 9 is outside 'abc'"):
        value("SUBSTRING('abc', 9)")
    with pytest.raises(CESQLEvaluationError, match="a negative length -1"):
        value("LEFT('abc', -1)")
