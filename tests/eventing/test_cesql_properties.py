"""CESQL v1 properties: arithmetic and LIKE against references, and random expressions that
mean the same parenthesised, pass only when true, and fail only with syntax errors."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from knserve.eventing.cesql import (
    INT_MAX,
    INT_MIN,
    CESQLEvaluationError,
    CESQLSyntaxError,
    Type,
    parse,
)

EVENT = {"specversion": "1.0", "id": "myId", "source": "/src", "type": "com.example.created"}


def value(expression: str, **extra: str) -> object:
    return parse(expression).value({**EVENT, **extra})


# ---------------------------------------------------------------------------------------------
# Properties

INT32 = st.integers(INT_MIN, INT_MAX)


def _truncated(a: int, b: int) -> tuple[int, int]:
    quotient = int(a / b) if abs(a) < 2**52 else a // b  # exact for 32-bit operands
    return quotient, a - b * quotient


@given(INT32, INT32, st.sampled_from(["+", "-", "*", "/", "%"]))
def test_arithmetic_matches_32_bit_reference(a: int, b: int, op: str) -> None:
    if op in "/%" and b == 0:
        expected = None
    else:
        expected = {
            "+": a + b,
            "-": a - b,
            "*": a * b,
            "/": _truncated(a, b)[0] if b else 0,
            "%": _truncated(a, b)[1] if b else 0,
        }[op]
    if expected is None or not INT_MIN <= expected <= INT_MAX:
        with pytest.raises(CESQLEvaluationError) as caught:
            value(f"{a} {op} {b}")
        assert caught.value.kind == "math"
    else:
        assert value(f"{a} {op} {b}") == expected
        # Through attributes too: Strings cast to Integer.
        assert value(f"x {op} y", x=str(a), y=str(b)) == expected


@given(INT32, INT32.filter(bool))
def test_division_identity(a: int, b: int) -> None:
    if (a, b) == (INT_MIN, -1):
        return  # the quotient overflows
    quotient, remainder = value(f"{a} / {b}"), value(f"{a} % {b}")
    assert quotient * b + remainder == a  # type: ignore[operator]
    assert abs(remainder) < abs(b)  # type: ignore[arg-type]
    assert remainder == 0 or (remainder > 0) == (a > 0)  # type: ignore[operator]


@given(INT32)
def test_integer_string_round_trip(n: int) -> None:
    assert value("INT(STRING(x)) = x", x=str(n)) is True
    assert value("INT(x)", x=str(n)) == n
    assert value("STRING(INT(x))", x=f"+{n}" if n >= 0 else str(n)) == str(n)
    assert value("IS_INT(x)", x=str(n)) is True


def _like_reference(text: str, pattern: str) -> bool:
    """A direct, slow matcher: % any run, _ one character, \\% and \\_ literal."""
    tokens = re.findall(r"\\[%_]|.", pattern, re.DOTALL)

    def match(i: int, j: int) -> bool:
        if j == len(tokens):
            return i == len(text)
        if tokens[j] == "%":
            return any(match(k, j + 1) for k in range(i, len(text) + 1))
        if i == len(text):
            return False
        if tokens[j] == "_" or tokens[j][-1] == text[i]:
            return match(i + 1, j + 1)
        return False

    return match(0, 0)


@given(st.text("ab%_\\.", max_size=8), st.text("ab%_\\.", max_size=8))
def test_like_matches_reference(text: str, pattern: str) -> None:
    # An odd run of backslashes at the end would escape the closing quote: not writable.
    assume((len(pattern) - len(pattern.rstrip("\\"))) % 2 == 0)
    assert parse(f"'{pattern}'").value({}) == pattern  # backslashes stay in the literal
    result = parse(f"x LIKE '{pattern}'").value({"x": text})
    assert result == _like_reference(text, pattern)
    assert parse(f"x NOT LIKE '{pattern}'").value({"x": text}) is not result


ATTRIBUTE = st.sampled_from(["a", "b", "n"])
LEAF = st.one_of(
    st.sampled_from(["TRUE", "FALSE", "0", "1", "-2", "'x'", "'1'", "'true'", "''"]),
    ATTRIBUTE,
    ATTRIBUTE.map(lambda a: f"EXISTS {a}"),
)


def _compose(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.sampled_from(
        ["AND", "OR", "XOR", "=", "!=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%"]
    )
    return st.one_of(
        st.tuples(children, binary, children).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(children, binary, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        children.map(lambda c: f"NOT {c}"),
        children.map(lambda c: f"-{c}"),
        children.map(lambda c: f"{c} LIKE '%1_'"),
        st.tuples(children, children).map(lambda t: f"{t[0]} NOT IN ({t[1]}, 'x')"),
        st.tuples(
            st.sampled_from(["LENGTH", "UPPER", "ABS", "INT", "BOOL", "STRING"]), children
        ).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, children).map(lambda t: f"CONCAT_WS('-', {t[0]}, {t[1]})"),
    )


EXPRESSIONS = st.recursive(LEAF, _compose, max_leaves=12)
EVENTS = st.fixed_dictionaries(
    {},
    optional={
        "a": st.sampled_from(["x", "1", "true", "", "0"]),
        "b": st.just("x"),
        "n": st.just("7"),
    },
)


def _outcome(expression: str, attrs: dict[str, str]) -> object:
    """The value, or ("error", kind)."""
    try:
        return parse(expression).value(attrs)
    except CESQLEvaluationError as error:
        return ("error", error.kind)


@given(EXPRESSIONS, EVENTS)
def test_parenthesized_form_means_the_same(expression: str, attrs: dict[str, str]) -> None:
    parsed = parse(expression)
    canonical = parsed.parenthesized()
    again = parse(canonical)
    assert again.parenthesized() == canonical  # a fixed point
    assert again.type is parsed.type
    assert _outcome(canonical, attrs) == _outcome(expression, attrs)


@given(EXPRESSIONS, EVENTS)
def test_evaluate_is_true_only_for_a_true_value(expression: str, attrs: dict[str, str]) -> None:
    parsed = parse(expression)
    outcome = _outcome(expression, attrs)
    assert parsed.evaluate(attrs) is (outcome is True)
    if not isinstance(outcome, tuple):  # the static type is the dynamic one
        assert {bool: Type.BOOLEAN, int: Type.INTEGER, str: Type.STRING}[
            type(outcome)
        ] is parsed.type


@given(EXPRESSIONS, EVENTS)
def test_not_inverts_a_boolean_without_errors(expression: str, attrs: dict[str, str]) -> None:
    outcome = _outcome(expression, attrs)
    if parse(expression).type is Type.BOOLEAN and isinstance(outcome, bool):
        assert parse(f"NOT ({expression})").value(attrs) is (not outcome)


@given(st.text(alphabet="abAB01 '\"\\()=<>!+-*/%,_#.\n", max_size=30))
def test_parser_fails_only_with_syntax_errors(text: str) -> None:
    try:
        expression = parse(text)
    except CESQLSyntaxError as error:
        assert 0 <= error.position <= len(text)
        return
    assert expression.evaluate({"a": "1", "b": "x"}) in (True, False)


@given(
    st.lists(
        st.sampled_from(
            [
                "AND",
                "OR",
                "NOT",
                "LIKE",
                "IN",
                "EXISTS",
                "a",
                "'x'",
                "1",
                "(",
                ")",
                ",",
                "=",
                "-",
                "TRUE",
                "LENGTH",
                "CONCAT",
            ]
        ),
        max_size=14,
    )
)
def test_token_soup_fails_only_with_syntax_errors(tokens: list[str]) -> None:
    text = " ".join(tokens)
    try:
        expression = parse(text)
    except CESQLSyntaxError:
        return
    assert expression.evaluate({"a": "1"}) in (True, False)
