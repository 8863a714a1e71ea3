"""CESQL's built-in functions (section 3.5): their signatures, checked by the parser, and their
implementations. INT, BOOL and STRING are just the implicit cast of their argument to the
parameter type; the others get arguments already cast to their parameters."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from knserve.eventing.cesql.types import (
    INT_MIN,
    B,
    CESQLEvaluationError,
    I,
    S,
    Type,
    Value,
    to_int,
)


def _left_right(s: str, n: int, left: bool) -> str:
    if n < 0:
        raise CESQLEvaluationError("functionEvaluation", f"a negative length {n}")
    return s[:n] if left else s[max(len(s) - n, 0) :]


def _substring(s: str, pos: int, length: int | None = None) -> str:
    if pos > len(s) or pos < -len(s):
        raise CESQLEvaluationError("functionEvaluation", f"position {pos} is outside {s!r}")
    if length is not None and length < 0:
        raise CESQLEvaluationError("functionEvaluation", f"a negative length {length}")
    if pos == 0:
        return ""
    start = pos - 1 if pos > 0 else len(s) + pos
    return s[start:] if length is None else s[start : start + length]


def _abs(n: int) -> int:
    if n == INT_MIN:  # the spec: return INT_MAX along with a math error; fail-fast keeps the error
        raise CESQLEvaluationError("math", f"ABS({n}) overflows a 32-bit Integer")
    return abs(n)


# Unicode White_Space (the spec's TRIM); str.strip() would also strip \x1c-\x1f separators.
_WHITESPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
_WHITESPACE += "\u2028\u2029\u202f\u205f\u3000"


@dataclass(frozen=True)
class Function:
    params: tuple[Type, ...]  # the fixed parameters
    optional: int  # how many of the trailing fixed parameters may be left out
    variadic: Type | None  # the type of any further arguments
    returns: Type
    impl: Callable[..., Value]


FUNCTIONS: dict[str, Function] = {
    "LENGTH": Function((S,), 0, None, I, len),
    "CONCAT": Function((), 0, S, S, lambda *xs: "".join(xs)),
    "CONCAT_WS": Function((S,), 0, S, S, lambda sep, *xs: sep.join(xs)),
    "LOWER": Function((S,), 0, None, S, str.lower),
    "UPPER": Function((S,), 0, None, S, str.upper),
    "TRIM": Function((S,), 0, None, S, lambda s: s.strip(_WHITESPACE)),
    "LEFT": Function((S, I), 0, None, S, lambda s, n: _left_right(s, n, left=True)),
    "RIGHT": Function((S, I), 0, None, S, lambda s, n: _left_right(s, n, left=False)),
    "SUBSTRING": Function((S, I, I), 1, None, S, _substring),
    "ABS": Function((I,), 0, None, I, _abs),
    "INT": Function((I,), 0, None, I, lambda x: x),
    "BOOL": Function((B,), 0, None, B, lambda x: x),
    "STRING": Function((S,), 0, None, S, lambda x: x),
    "IS_INT": Function((S,), 0, None, B, lambda s: to_int(s) is not None),
    "IS_BOOL": Function((S,), 0, None, B, lambda s: s.lower() in ("true", "false")),
}
