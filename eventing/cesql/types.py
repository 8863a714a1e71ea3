"""CESQL's types, its errors and its implicit casts (section 3.7), shared by the parser, the
expression tree and the built-in functions."""

from __future__ import annotations

import enum
import re

INT_MIN, INT_MAX = -(2**31), 2**31 - 1

Value = bool | int | str


class Type(enum.Enum):
    """The three CESQL value types."""

    BOOLEAN = "Boolean"
    INTEGER = "Integer"
    STRING = "String"


class CESQLSyntaxError(ValueError):
    """The expression does not parse (the spec's ParseError); ``position`` is a 0-based offset."""

    def __init__(self, message: str, position: int, expression: str) -> None:
        self.message, self.position, self.expression = message, position, expression
        super().__init__(f"syntax error at position {position}: {message}")


class CESQLEvaluationError(Exception):
    """An evaluation error; ``kind`` is the spec's name for it.

    One of ``missingAttribute``, ``cast``, ``math`` or ``functionEvaluation``.
    """

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


# Casting (section 3.7)

_INT_TEXT = re.compile(r"[+-]?[0-9]+")  # ASCII digits only, unlike int(): no "_", no spaces


def to_int(text: str) -> int | None:
    if _INT_TEXT.fullmatch(text) and INT_MIN <= (n := int(text)) <= INT_MAX:
        return n
    return None


def cast(value: Value, target: Type) -> Value:
    """``value`` as ``target``; the parser casts only between different types, so a value that
    already has the target type never gets here (it would come back unchanged)."""
    if target is Type.STRING:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)
    if isinstance(value, int):  # a bool too: 1 or 0 as an Integer, itself as a Boolean
        return int(value) if target is Type.INTEGER else value != 0
    if target is Type.INTEGER:
        if (n := to_int(value)) is None:
            raise CESQLEvaluationError("cast", f"cannot cast {value!r} to an Integer")
        return n
    if (low := value.lower()) in ("true", "false"):
        return low == "true"
    raise CESQLEvaluationError("cast", f"cannot cast {value!r} to a Boolean")


def as_int(value: Value) -> int:
    """An operand the parser cast to Integer, typed so (and checked: bool counts as int)."""
    if isinstance(value, int):
        return value
    raise TypeError(f"{value!r} reached an Integer operator uncast")


def as_str(value: Value) -> str:
    """An operand the parser cast to String, typed so."""
    if isinstance(value, str):
        return value
    raise TypeError(f"{value!r} reached a String operator uncast")


def check_range(n: int) -> int:
    if not INT_MIN <= n <= INT_MAX:
        raise CESQLEvaluationError("math", f"{n} overflows a 32-bit Integer")
    return n


S, I, B = Type.STRING, Type.INTEGER, Type.BOOLEAN  # noqa: E741  # short, for the parser's tables
