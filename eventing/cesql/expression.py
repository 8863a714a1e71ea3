"""The CESQL expression tree: each node knows its static type, evaluates itself against an
event's attributes, and renders itself fully parenthesised (what the parser understood -- handy
in error reports and tests)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from knserve.eventing.cesql.function import Function
from knserve.eventing.cesql.types import (
    CESQLEvaluationError,
    Type,
    Value,
    as_int,
    as_str,
    cast,
    check_range,
)

Attrs = Mapping[str, str]


class Node:
    type: Type
    depth: int = 1

    def eval(self, attrs: Attrs) -> Value:
        raise NotImplementedError

    def render(self) -> str:
        raise NotImplementedError


def _quote(text: str) -> str:
    return "'" + text.replace("'", "\\'") + "'"


@dataclass
class Literal(Node):
    value: Value
    type: Type

    def eval(self, attrs: Attrs) -> Value:
        return self.value

    def render(self) -> str:
        if isinstance(self.value, str):
            return _quote(self.value)
        return str(self.value).upper() if self.type is Type.BOOLEAN else str(self.value)


@dataclass
class Attribute(Node):
    name: str
    type: Type = Type.STRING

    def eval(self, attrs: Attrs) -> Value:
        try:
            value = attrs[self.name]
        except KeyError:
            raise CESQLEvaluationError(
                "missingAttribute", f"the event has no {self.name!r} attribute"
            ) from None
        # Attributes arrive as strings; anything else is represented as a String (section 3.2).
        return value if type(value) is str else cast(value, Type.STRING)

    def render(self) -> str:
        return self.name


@dataclass
class Cast(Node):
    inner: Node
    type: Type

    def eval(self, attrs: Attrs) -> Value:
        return cast(self.inner.eval(attrs), self.type)

    def render(self) -> str:  # implicit: shown as written
        return self.inner.render()


@dataclass
class Unary(Node):
    op: str  # "NOT" or "-"
    operand: Node
    type: Type

    def eval(self, attrs: Attrs) -> Value:
        value = self.operand.eval(attrs)
        return (not value) if self.op == "NOT" else check_range(-as_int(value))

    def render(self) -> str:
        operand = self.operand.render()
        if self.op == "NOT":
            return f"(NOT {operand})"
        # -(5) stays an operation: written -5 it would read back as a negative literal.
        return f"(-({operand}))" if isinstance(self.operand, Literal) else f"(-{operand})"


def _divide(a: int, b: int, op: str) -> int:
    if b == 0:
        raise CESQLEvaluationError("math", f"{a} {op} 0: division by zero")
    quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)  # truncated, towards 0
    return check_range(quotient) if op == "/" else a - b * quotient  # remainder: sign of a


_INTEGER: dict[str, Callable[[int, int], Value]] = {
    "+": lambda a, b: check_range(a + b),
    "-": lambda a, b: check_range(a - b),
    "*": lambda a, b: check_range(a * b),
    "/": lambda a, b: _divide(a, b, "/"),
    "%": lambda a, b: _divide(a, b, "%"),
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}
_EQUALITY: dict[str, Callable[[Value, Value], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
}


@dataclass
class Binary(Node):
    op: str
    left: Node
    right: Node
    type: Type

    def eval(self, attrs: Attrs) -> Value:
        left = self.left.eval(attrs)  # left first: `missing / 0` is a missingAttribute error
        if self.op in _EQUALITY:
            return _EQUALITY[self.op](left, self.right.eval(attrs))
        return _INTEGER[self.op](as_int(left), as_int(self.right.eval(attrs)))

    def render(self) -> str:
        return f"({self.left.render()} {self.op} {self.right.render()})"


@dataclass
class Logic(Node):
    op: str  # AND, OR or XOR over two or more operands (a run of one operator, flattened)
    operands: list[Node]
    type: Type = Type.BOOLEAN

    def eval(self, attrs: Attrs) -> Value:
        if self.op == "AND":  # short-circuit, as the spec requires
            return all(operand.eval(attrs) for operand in self.operands)
        if self.op == "OR":
            return any(operand.eval(attrs) for operand in self.operands)
        return sum(bool(operand.eval(attrs)) for operand in self.operands) % 2 == 1

    def render(self) -> str:
        return "(" + f" {self.op} ".join(operand.render() for operand in self.operands) + ")"


def _like_regex(pattern: str) -> re.Pattern[str]:
    # % is any run of characters, _ exactly one; \% and \_ are literal; anything else, a lone
    # backslash included, matches itself (the conformance suite's 'ab\c' LIKE 'ab\c').
    parts = []
    for token in re.findall(r"\\[%_]|.", pattern, re.DOTALL):
        parts.append({"%": ".*", "_": "."}.get(token) or re.escape(token[-1]))
    return re.compile("".join(parts), re.DOTALL)


@dataclass
class Like(Node):
    operand: Node
    pattern: str
    negated: bool
    type: Type = Type.BOOLEAN

    def __post_init__(self) -> None:
        self.regex = _like_regex(self.pattern)

    def eval(self, attrs: Attrs) -> Value:
        value = as_str(self.operand.eval(attrs))  # the parser cast it to String
        return (self.regex.fullmatch(value) is None) == self.negated

    def render(self) -> str:
        return f"({self.operand.render()} {'NOT ' * self.negated}LIKE {_quote(self.pattern)})"


@dataclass
class In(Node):
    operand: Node
    items: list[Node]
    negated: bool
    type: Type = Type.BOOLEAN

    def eval(self, attrs: Attrs) -> Value:
        value = self.operand.eval(attrs)
        # Left to right, stopping at the first match, like the OR chain it abbreviates.
        found = any(item.eval(attrs) == value for item in self.items)
        return found != self.negated

    def render(self) -> str:
        items = ", ".join(item.render() for item in self.items)
        return f"({self.operand.render()} {'NOT ' * self.negated}IN ({items}))"


@dataclass
class Exists(Node):
    name: str
    type: Type = Type.BOOLEAN

    def eval(self, attrs: Attrs) -> Value:
        return self.name in attrs

    def render(self) -> str:
        return f"(EXISTS {self.name})"


@dataclass
class Call(Node):
    name: str
    function: Function
    args: list[Node]

    def __post_init__(self) -> None:
        self.type = self.function.returns

    def eval(self, attrs: Attrs) -> Value:
        return self.function.impl(*[arg.eval(attrs) for arg in self.args])

    def render(self) -> str:
        return f"{self.name}({', '.join(arg.render() for arg in self.args)})"
