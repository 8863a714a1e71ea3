"""CESQL v1's parser: precedence as the parser understood it, syntax errors with their position,
bounded nesting."""

from __future__ import annotations

import pytest

from knserve.eventing.cesql import (
    MAX_DEPTH,
    CESQLSyntaxError,
    parse,
)

EVENT = {"specversion": "1.0", "id": "myId", "source": "/src", "type": "com.example.created"}


def value(expression: str, **extra: str) -> object:
    return parse(expression).value({**EVENT, **extra})


# ---------------------------------------------------------------------------------------------
# Precedence (spec section 3.6), shown as the parser understood it


@pytest.mark.parametrize(
    ("expression", "parenthesized"),
    [
        ("a OR b AND c", "((a OR b) AND c)"),  # one level, left to right
        ("a AND b OR c", "((a AND b) OR c)"),
        ("a XOR b OR c AND d", "(((a XOR b) OR c) AND d)"),
        ("a AND b AND c", "(a AND b AND c)"),
        ("a OR (b AND c)", "(a OR (b AND c))"),
        ("a = 'x' AND b = 'y'", "((a = 'x') AND (b = 'y'))"),
        ("NOT a = b", "((NOT a) = b)"),  # NOT binds tightest
        ("NOT (a = b)", "(NOT (a = b))"),
        ("NOT a LIKE 'x%'", "((NOT a) LIKE 'x%')"),
        ("a NOT LIKE 'x%'", "(a NOT LIKE 'x%')"),
        ("-a * b", "((-a) * b)"),
        ("-a LIKE '1'", "((-a) LIKE '1')"),
        ("a + b LIKE '1%'", "(a + (b LIKE '1%'))"),  # LIKE above arithmetic
        ("a + b IN (1)", "(a + (b IN (1)))"),
        ("a * b + c", "((a * b) + c)"),
        ("a + b * c", "(a + (b * c))"),
        ("a - b - c", "((a - b) - c)"),
        ("a / b % c", "((a / b) % c)"),
        ("a + 1 = b", "((a + 1) = b)"),
        ("a < b = TRUE", "((a < b) = TRUE)"),
        ("a = b = c", "((a = b) = c)"),
        ("EXISTS a AND b", "((EXISTS a) AND b)"),
        ("NOT EXISTS a", "(NOT (EXISTS a))"),
        ("LENGTH(a) + 1", "(LENGTH(a) + 1)"),
        ("a LIKE 'x' LIKE 'true'", "((a LIKE 'x') LIKE 'true')"),
        ("a IN (1, b + 2)", "(a IN (1, (b + 2)))"),
        ("a NOT IN ('x')", "(a NOT IN ('x'))"),
        ("-5", "-5"),
        ("-(5)", "(-(5))"),
        ("- -5", "(-(-5))"),
        ("'it\\'s'", "'it\\'s'"),
        ("((a))", "a"),
        ("true", "TRUE"),
        ("int(a)", "INT(a)"),
        ('a = "x"', "(a = 'x')"),
    ],
)
def test_precedence(expression: str, parenthesized: str) -> None:
    assert parse(expression).parenthesized() == parenthesized


# ---------------------------------------------------------------------------------------------
# Syntax errors: (expression, message, 0-based position)

SYNTAX_ERRORS = [
    ("", "empty expression", 0),
    ("   ", "empty expression", 3),
    (
        "a =",
        'expected a value (a literal, an attribute, a function call, EXISTS or "("), '
        "found the end of the expression",
        3,
    ),
    (
        "a = )",
        'expected a value (a literal, an attribute, a function call, EXISTS or "("), found ")"',
        4,
    ),
    (
        "AND a",
        'expected a value (a literal, an attribute, a function call, EXISTS or "("), found "AND"',
        0,
    ),
    ("(a", 'expected ")" to close the one at position 0, found the end of the expression', 2),
    ("(a = 1 b", 'expected ")" to close the one at position 0, found "b"', 7),
    ("a)", 'expected an operator or the end, found ")"', 1),
    ("a b", 'expected an operator or the end, found "b"', 2),
    ("1 2", 'expected an operator or the end, found "2"', 2),
    ("'abc", "unterminated string", 0),
    ('a = "abc', "unterminated string", 4),
    ("'abc\\'", "unterminated string", 0),
    ("a # b", 'unexpected "#"', 2),
    (
        "a == b",
        'expected a value (a literal, an attribute, a function call, EXISTS or "("), found "="',
        3,
    ),
    ("a && b", 'unexpected "&"', 2),
    ("a.b = 1", 'unexpected "."', 1),
    (
        "Type = 'x'",
        'invalid attribute name "Type": CloudEvents attribute names are lowercase '
        'letters and digits (did you mean "type"?)',
        0,
    ),
    (
        "my_ext = 'x'",
        'invalid attribute name "my_ext": CloudEvents attribute names are '
        "lowercase letters and digits",
        0,
    ),
    (
        "EXISTS Type",
        'invalid attribute name "Type": CloudEvents attribute names are lowercase '
        'letters and digits (did you mean "type"?)',
        7,
    ),
    ("EXISTS 'a'", 'EXISTS needs an attribute name, found "a"', 7),
    ("EXISTS", "EXISTS needs an attribute name, found the end of the expression", 6),
    ("a LIKE b", 'LIKE needs a string literal pattern, found "b"', 7),
    ("a LIKE 1", 'LIKE needs a string literal pattern, found "1"', 7),
    ("a LIKE", "LIKE needs a string literal pattern, found the end of the expression", 6),
    ("a IN 'x'", 'expected "(" after IN, found "x"', 5),
    ("a IN ()", "IN needs at least one value between the parentheses", 6),
    ("a IN ('x'", 'expected ")" to close the IN list, found the end of the expression', 9),
    (
        "a IN ('x',)",
        'expected a value (a literal, an attribute, a function call, EXISTS or "("), found ")"',
        10,
    ),
    ("a NOT b", 'expected LIKE or IN after "NOT", found "b"', 6),
    ("a NOT", 'expected LIKE or IN after "NOT", found the end of the expression', 5),
    ("2147483648", "integer 2147483648 is outside the 32-bit range", 0),
    ("-2147483649", "integer -2147483649 is outside the 32-bit range", 1),
    ("+a", '"+" is only a sign of an integer literal', 0),
    (
        "FOO(1)",
        'unknown function "FOO"; the built-in ones are ABS, BOOL, CONCAT, CONCAT_WS, '
        "INT, IS_BOOL, IS_INT, LEFT, LENGTH, LOWER, RIGHT, STRING, SUBSTRING, TRIM, UPPER",
        0,
    ),
    (
        "a = x(1)",
        'unknown function "x"; the built-in ones are ABS, BOOL, CONCAT, CONCAT_WS, '
        "INT, IS_BOOL, IS_INT, LEFT, LENGTH, LOWER, RIGHT, STRING, SUBSTRING, TRIM, UPPER",
        4,
    ),
    ("LENGTH()", "LENGTH takes 1 argument, got 0", 0),
    ("LENGTH('a', 'b')", "LENGTH takes 1 argument, got 2", 0),
    ("LEFT('a')", "LEFT takes 2 arguments, got 1", 0),
    ("RIGHT('a', 1, 2)", "RIGHT takes 2 arguments, got 3", 0),
    ("SUBSTRING('a')", "SUBSTRING takes 2 to 3 arguments, got 1", 0),
    ("SUBSTRING('a', 1, 2, 3)", "SUBSTRING takes 2 to 3 arguments, got 4", 0),
    ("CONCAT_WS()", "CONCAT_WS takes 1 or more arguments, got 0", 0),
    ("ABS()", "ABS takes 1 argument, got 0", 0),
    ("int(1, 2)", "INT takes 1 argument, got 2", 0),
    (
        "LOWER('a'",
        'expected ")" to close the arguments of LOWER, found the end of the expression',
        9,
    ),
    (
        "CONCAT('a',)",
        'expected a value (a literal, an attribute, a function call, EXISTS or "("), found ")"',
        11,
    ),
]


@pytest.mark.parametrize(("expression", "message", "position"), SYNTAX_ERRORS)
def test_syntax_errors(expression: str, message: str, position: int) -> None:
    with pytest.raises(CESQLSyntaxError) as caught:
        parse(expression)
    error = caught.value
    assert (error.message, error.position) == (message, position)
    assert str(error) == f"syntax error at position {position}: {message}"
    assert error.expression == expression
    assert isinstance(error, ValueError)


def test_nesting_is_bounded() -> None:
    parse("(" * (MAX_DEPTH - 1) + "TRUE" + ")" * (MAX_DEPTH - 1))
    for deep in (
        "(" * 500 + "TRUE" + ")" * 500,
        "NOT " * 500 + "TRUE",
        "-" * 500 + "(1)",
        " + ".join(["1"] * 500),  # a left-deep chain
        "LENGTH(" * 500 + "'x'" + ")" * 500,
    ):
        with pytest.raises(CESQLSyntaxError, match=f"nested more than {MAX_DEPTH} levels deep"):
            parse(deep)


def test_long_chains_of_one_logical_operator_are_flat() -> None:
    ors = " OR ".join(f"type = 't{i}'" for i in range(2000))
    expression = parse(ors)
    assert expression.evaluate({"type": "t1999"})
    assert not expression.evaluate({"type": "t2000"})
