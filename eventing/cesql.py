"""CloudEvents SQL (CESQL) v1.0: a recursive-descent parser and a fail-fast evaluator.

``parse(text)`` turns an expression into an :class:`Expression`; ``Expression.evaluate(attrs)``
applies it to a CloudEvent's attributes as a filter predicate. The semantics are the v1.0
specification's (https://github.com/cloudevents/spec/blob/main/cesql/spec.md):

* Every attribute is a String; operators cast their operands implicitly (section 3.7): ``<``
  and friends, arithmetic and unary ``-`` cast to Integer; ``NOT``/``AND``/``OR``/``XOR`` to
  Boolean; ``LIKE`` casts its left side to String; ``=``/``!=``/``<>`` cast the left side to the
  type of the right (``sequence = 10`` compares integers, ``10 = sequence`` strings); ``IN``
  casts the list to the type of the left side.
* Precedence (section 3.6), tightest first: function calls, ``NOT``, unary ``-``, ``LIKE``,
  ``IN``, ``* / %``, ``+ -``, comparisons, then ``AND OR XOR`` -- one level, left to right, so
  ``a OR b AND c`` is ``(a OR b) AND c`` and ``NOT a = b`` is ``(NOT a) = b``. Parenthesise.
* Errors (a missing attribute, a failed cast, division by zero, an out-of-range argument) stop
  the evaluation ("fail fast", section 4.1); a filter then does not pass (section 1.2), so
  ``NOT (missing = 'x')`` is false too. Guard optional attributes: ``EXISTS x AND x = 'y'``.

Types are static here (attributes are always String), so every implicit cast is decided once at
parse time, and unknown functions or wrong argument counts are syntax errors rather than
evaluation errors (the spec asks for compile-time checks "whenever possible").
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["CESQLEvaluationError", "CESQLSyntaxError", "Expression", "Type", "parse"]

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
# Bounds recursion in the parser and the evaluator, so a hostile expression is a syntax error
# rather than a RecursionError. Chains of one logical operator are flattened and do not count.
MAX_DEPTH = 50

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


# ---------------------------------------------------------------------------------------------
# Casting (section 3.7)

_INT_TEXT = re.compile(r"[+-]?[0-9]+")  # ASCII digits only, unlike int(): no "_", no spaces


def _to_int(text: str) -> int | None:
    if _INT_TEXT.fullmatch(text) and INT_MIN <= (n := int(text)) <= INT_MAX:
        return n
    return None


def _cast(value: Value, target: Type) -> Value:
    if target is Type.STRING:
        return ("true" if value else "false") if type(value) is bool else str(value)
    if target is Type.INTEGER:
        if type(value) is bool:
            return int(value)
        if (n := _to_int(value)) is None:  # type: ignore[arg-type]  # only str gets here
            raise CESQLEvaluationError("cast", f"cannot cast {value!r} to an Integer")
        return n
    if type(value) is int:
        return value != 0
    if (low := value.lower()) in ("true", "false"):  # type: ignore[union-attr]
        return low == "true"
    raise CESQLEvaluationError("cast", f"cannot cast {value!r} to a Boolean")


def _check_range(n: int) -> int:
    if not INT_MIN <= n <= INT_MAX:
        raise CESQLEvaluationError("math", f"{n} overflows a 32-bit Integer")
    return n


# ---------------------------------------------------------------------------------------------
# The syntax tree: each node knows its static type, evaluates itself, and renders itself fully
# parenthesised (what the parser understood -- handy in error reports and tests).

Attrs = Mapping[str, str]


class _Node:
    type: Type
    depth: int = 1

    def eval(self, attrs: Attrs) -> Value:
        raise NotImplementedError

    def render(self) -> str:
        raise NotImplementedError


def _quote(text: str) -> str:
    return "'" + text.replace("'", "\\'") + "'"


@dataclass
class _Literal(_Node):
    value: Value
    type: Type

    def eval(self, attrs: Attrs) -> Value:
        return self.value

    def render(self) -> str:
        if self.type is Type.STRING:
            return _quote(self.value)  # type: ignore[arg-type]
        return str(self.value).upper() if self.type is Type.BOOLEAN else str(self.value)


@dataclass
class _Attribute(_Node):
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
        return value if type(value) is str else _cast(value, Type.STRING)

    def render(self) -> str:
        return self.name


@dataclass
class _Cast(_Node):
    inner: _Node
    type: Type

    def eval(self, attrs: Attrs) -> Value:
        return _cast(self.inner.eval(attrs), self.type)

    def render(self) -> str:  # implicit: shown as written
        return self.inner.render()


@dataclass
class _Unary(_Node):
    op: str  # "NOT" or "-"
    operand: _Node
    type: Type

    def eval(self, attrs: Attrs) -> Value:
        value = self.operand.eval(attrs)
        return (not value) if self.op == "NOT" else _check_range(-value)  # type: ignore[operator]

    def render(self) -> str:
        operand = self.operand.render()
        if self.op == "NOT":
            return f"(NOT {operand})"
        # -(5) stays an operation: written -5 it would read back as a negative literal.
        return f"(-({operand}))" if isinstance(self.operand, _Literal) else f"(-{operand})"


def _divide(a: int, b: int, op: str) -> int:
    if b == 0:
        raise CESQLEvaluationError("math", f"{a} {op} 0: division by zero")
    quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)  # truncated, towards 0
    return _check_range(quotient) if op == "/" else a - b * quotient  # remainder: sign of a


_ARITHMETIC: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: _check_range(a + b),
    "-": lambda a, b: _check_range(a - b),
    "*": lambda a, b: _check_range(a * b),
    "/": lambda a, b: _divide(a, b, "/"),
    "%": lambda a, b: _divide(a, b, "%"),
}
_COMPARISON: dict[str, Callable[[Value, Value], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,  # type: ignore[operator]  # Integer only
    "<=": lambda a, b: a <= b,  # type: ignore[operator]
    ">": lambda a, b: a > b,  # type: ignore[operator]
    ">=": lambda a, b: a >= b,  # type: ignore[operator]
}


@dataclass
class _Binary(_Node):
    op: str
    left: _Node
    right: _Node
    type: Type

    def eval(self, attrs: Attrs) -> Value:
        left = self.left.eval(attrs)  # left first: `missing / 0` is a missingAttribute error
        if self.op in _ARITHMETIC:
            return _ARITHMETIC[self.op](left, self.right.eval(attrs))  # type: ignore[arg-type]
        return _COMPARISON[self.op](left, self.right.eval(attrs))

    def render(self) -> str:
        return f"({self.left.render()} {self.op} {self.right.render()})"


@dataclass
class _Logic(_Node):
    op: str  # AND, OR or XOR over two or more operands (a run of one operator, flattened)
    operands: list[_Node]
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
class _Like(_Node):
    operand: _Node
    pattern: str
    negated: bool
    type: Type = Type.BOOLEAN

    def __post_init__(self) -> None:
        self.regex = _like_regex(self.pattern)

    def eval(self, attrs: Attrs) -> Value:
        value: str = self.operand.eval(attrs)  # type: ignore[assignment]  # cast to String
        return (self.regex.fullmatch(value) is None) == self.negated

    def render(self) -> str:
        return f"({self.operand.render()} {'NOT ' * self.negated}LIKE {_quote(self.pattern)})"


@dataclass
class _In(_Node):
    operand: _Node
    items: list[_Node]
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
class _Exists(_Node):
    name: str
    type: Type = Type.BOOLEAN

    def eval(self, attrs: Attrs) -> Value:
        return self.name in attrs

    def render(self) -> str:
        return f"(EXISTS {self.name})"


# ---------------------------------------------------------------------------------------------
# Built-in functions (section 3.5). INT, BOOL and STRING are just the implicit cast of their
# argument to the parameter type; the others get arguments already cast to their parameters.


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

S, I, B = Type.STRING, Type.INTEGER, Type.BOOLEAN  # noqa: E741  # short, for the tables


@dataclass(frozen=True)
class _Function:
    params: tuple[Type, ...]  # the fixed parameters
    optional: int  # how many of the trailing fixed parameters may be left out
    variadic: Type | None  # the type of any further arguments
    returns: Type
    impl: Callable[..., Value]


_FUNCTIONS: dict[str, _Function] = {
    "LENGTH": _Function((S,), 0, None, I, len),
    "CONCAT": _Function((), 0, S, S, lambda *xs: "".join(xs)),
    "CONCAT_WS": _Function((S,), 0, S, S, lambda sep, *xs: sep.join(xs)),
    "LOWER": _Function((S,), 0, None, S, str.lower),
    "UPPER": _Function((S,), 0, None, S, str.upper),
    "TRIM": _Function((S,), 0, None, S, lambda s: s.strip(_WHITESPACE)),
    "LEFT": _Function((S, I), 0, None, S, lambda s, n: _left_right(s, n, left=True)),
    "RIGHT": _Function((S, I), 0, None, S, lambda s, n: _left_right(s, n, left=False)),
    "SUBSTRING": _Function((S, I, I), 1, None, S, _substring),
    "ABS": _Function((I,), 0, None, I, _abs),
    "INT": _Function((I,), 0, None, I, lambda x: x),
    "BOOL": _Function((B,), 0, None, B, lambda x: x),
    "STRING": _Function((S,), 0, None, S, lambda x: x),
    "IS_INT": _Function((S,), 0, None, B, lambda s: _to_int(s) is not None),
    "IS_BOOL": _Function((S,), 0, None, B, lambda s: s.lower() in ("true", "false")),
}


@dataclass
class _Call(_Node):
    name: str
    function: _Function
    args: list[_Node]

    def __post_init__(self) -> None:
        self.type = self.function.returns

    def eval(self, attrs: Attrs) -> Value:
        return self.function.impl(*[arg.eval(attrs) for arg in self.args])

    def render(self) -> str:
        return f"{self.name}({', '.join(arg.render() for arg in self.args)})"


# ---------------------------------------------------------------------------------------------
# Lexer and parser

_TOKENS = re.compile(
    r"""(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<word>[A-Za-z0-9_]+)
      | (?P<op><>|!=|<=|>=|[=<>+\-*/%(),])""",
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS = {"AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "FALSE"}
_IDENTIFIER = re.compile(r"[a-z0-9]+")
_COMPARISONS = {"=", "!=", "<>", "<", "<=", ">", ">="}


@dataclass(frozen=True)
class _Token:
    kind: str  # string, int, word, keyword, op or end
    text: str  # as written; keywords upper-cased, strings unescaped
    position: int

    def __str__(self) -> str:
        return "the end of the expression" if self.kind == "end" else f'"{self.text}"'


def _unescape(body: str, quote: str) -> str:
    # Only the delimiting quote is escaped; other backslashes stay, for LIKE's \% and \_.
    return re.sub(r"\\(.)", lambda m: m[1] if m[1] == quote else m[0], body, flags=re.DOTALL)


def _tokenize(text: str) -> list[_Token]:
    tokens, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return [*tokens, _Token("end", "", pos)]
        match = _TOKENS.match(text, pos)
        if match is None:
            what = "unterminated string" if text[pos] in "'\"" else f'unexpected "{text[pos]}"'
            raise CESQLSyntaxError(what, pos, text)
        kind, raw = match.lastgroup or "", match[0]
        if kind == "string":
            tokens.append(_Token("string", _unescape(raw[1:-1], raw[0]), pos))
        elif kind == "word" and raw.upper() in _KEYWORDS:
            tokens.append(_Token("keyword", raw.upper(), pos))
        elif kind == "word" and raw.isdigit():
            tokens.append(_Token("int", raw, pos))
        else:
            tokens.append(_Token(kind, raw, pos))
        pos = match.end()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.index, self.nesting = text, _tokenize(text), 0, 0

    # -- helpers
    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def at(self, *texts: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind in ("op", "keyword") and token.text in texts

    def error(self, message: str, token: _Token | None = None) -> CESQLSyntaxError:
        return CESQLSyntaxError(message, (token or self.peek()).position, self.text)

    def expect(self, text: str, context: str) -> _Token:
        if not self.at(text):
            raise self.error(f'expected "{text}" {context}, found {self.peek()}')
        return self.take()

    def node(self, node: _Node, token: _Token) -> _Node:
        children = [v for v in vars(node).values() if isinstance(v, _Node)]
        children += [n for v in vars(node).values() if isinstance(v, list) for n in v]
        node.depth = 1 + max((child.depth for child in children), default=0)
        if node.depth > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep", token)
        return node

    def cast(self, node: _Node, target: Type) -> _Node:
        if node.type is target:
            return node
        cast = _Cast(node, target)
        cast.depth = node.depth + 1
        return cast

    # -- grammar, loosest binding first
    def parse(self) -> _Node:
        if self.peek().kind == "end":
            raise self.error("empty expression")
        node = self.logic()
        if self.peek().kind != "end":
            raise self.error(f"expected an operator or the end, found {self.peek()}")
        return node

    def logic(self) -> _Node:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep")
        node = self.comparison()
        while self.at("AND", "OR", "XOR"):
            token = self.take()
            right = self.cast(self.comparison(), B)
            if isinstance(node, _Logic) and node.op == token.text:
                node.operands.append(right)  # same operator: associative, so flatten
                node.depth = max(node.depth, right.depth + 1)
            else:
                node = self.node(_Logic(token.text, [self.cast(node, B), right]), token)
        self.nesting -= 1
        return node

    def comparison(self) -> _Node:
        node = self.additive()
        while self.at(*_COMPARISONS):
            token = self.take()
            right = self.additive()
            if token.text in ("=", "!=", "<>"):  # ambiguous: the right side picks the type
                left = self.cast(node, right.type)
            else:
                left, right = self.cast(node, I), self.cast(right, I)
            node = self.node(_Binary(token.text, left, right, B), token)
        return node

    def additive(self) -> _Node:
        return self.arithmetic(("+", "-"), self.multiplicative)

    def multiplicative(self) -> _Node:
        return self.arithmetic(("*", "/", "%"), self.postfix)

    def arithmetic(self, ops: tuple[str, ...], operand: Callable[[], _Node]) -> _Node:
        node = operand()
        while self.at(*ops):
            token = self.take()
            right = self.cast(operand(), I)
            node = self.node(_Binary(token.text, self.cast(node, I), right, I), token)
        return node

    def postfix(self) -> _Node:
        node = self.unary()
        while self.at("LIKE", "IN", "NOT"):
            negated = self.at("NOT")
            if negated:
                self.take()  # after an operand, NOT can only start NOT LIKE or NOT IN
                if not self.at("LIKE", "IN"):
                    raise self.error(f'expected LIKE or IN after "NOT", found {self.peek()}')
            token = self.take()
            if token.text == "LIKE":
                pattern = self.take()
                if pattern.kind != "string":
                    raise self.error(
                        f"LIKE needs a string literal pattern, found {pattern}", pattern
                    )
                node = self.node(_Like(self.cast(node, S), pattern.text, negated), token)
            else:
                self.expect("(", "after IN")
                if self.at(")"):
                    raise self.error("IN needs at least one value between the parentheses")
                items = [self.cast(self.logic(), node.type)]
                while self.at(","):
                    self.take()
                    items.append(self.cast(self.logic(), node.type))
                self.expect(")", "to close the IN list")
                node = self.node(_In(node, items, negated), token)
        return node

    def unary(self) -> _Node:
        token = self.peek()
        if self.at("NOT", "-", "+"):
            self.take()
            if token.text != "NOT" and self.peek().kind == "int":  # a signed integer literal
                return self.integer(self.take(), negative=token.text == "-")
            if token.text == "+":
                raise self.error('"+" is only a sign of an integer literal', token)
            self.nesting += 1  # NOT NOT NOT ... recurses without passing through logic()
            if self.nesting > MAX_DEPTH:
                raise self.error(f"expression nested more than {MAX_DEPTH} levels deep", token)
            operand = self.unary()
            self.nesting -= 1
            target = B if token.text == "NOT" else I
            return self.node(_Unary(token.text, self.cast(operand, target), target), token)
        return self.primary()

    def integer(self, token: _Token, negative: bool = False) -> _Node:
        value = -int(token.text) if negative else int(token.text)
        if not INT_MIN <= value <= INT_MAX:
            raise self.error(f"integer {value} is outside the 32-bit range", token)
        return _Literal(value, I)

    def primary(self) -> _Node:
        token = self.take()
        if token.kind == "string":
            return _Literal(token.text, S)
        if token.kind == "int":
            return self.integer(token)
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
            return _Literal(token.text == "TRUE", B)
        if token.kind == "keyword" and token.text == "EXISTS":
            name = self.take()
            if name.kind not in ("word", "int"):
                raise self.error(f"EXISTS needs an attribute name, found {name}", name)
            return _Exists(self.identifier(name))
        if token.kind == "op" and token.text == "(":
            node = self.logic()
            self.expect(")", f"to close the one at position {token.position}")
            return node
        if token.kind == "word" and self.at("("):
            return self.call(token)
        if token.kind in ("word", "int"):
            return _Attribute(self.identifier(token))
        what = 'a value (a literal, an attribute, a function call, EXISTS or "(")'
        raise self.error(f"expected {what}, found {token}", token)

    def identifier(self, token: _Token) -> str:
        if not _IDENTIFIER.fullmatch(token.text):
            lower = token.text.lower()
            hint = f' (did you mean "{lower}"?)' if _IDENTIFIER.fullmatch(lower) else ""
            message = "CloudEvents attribute names are lowercase letters and digits"
            raise self.error(f"invalid attribute name {token}: {message}{hint}", token)
        return token.text

    def call(self, name: _Token) -> _Node:
        function = _FUNCTIONS.get(name.text.upper())
        if function is None:
            known = ", ".join(sorted(_FUNCTIONS))
            raise self.error(f"unknown function {name}; the built-in ones are {known}", name)
        self.take()  # "("
        args: list[_Node] = []
        if not self.at(")"):
            args.append(self.logic())
            while self.at(","):
                self.take()
                args.append(self.logic())
        self.expect(")", f"to close the arguments of {name.text.upper()}")
        fixed, least = len(function.params), len(function.params) - function.optional
        if len(args) < least or (function.variadic is None and len(args) > fixed):
            expected = f"{least} to {fixed}" if function.optional else str(fixed)
            expected += " or more" if function.variadic else ""
            raise self.error(
                f"{name.text.upper()} takes {expected} argument{'s' * (expected != '1')}, "
                f"got {len(args)}",
                name,
            )
        types = [*function.params, *[function.variadic or S] * len(args)]
        args = [self.cast(arg, t) for arg, t in zip(args, types, strict=False)]
        return self.node(_Call(name.text.upper(), function, args), name)


# ---------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True, eq=False)
class Expression:
    """A parsed CESQL expression: ``source`` as written, ``type`` its static result type."""

    source: str
    type: Type
    _root: _Node = field(repr=False)

    def evaluate(self, attrs: Mapping[str, str]) -> bool:
        """Apply the expression as a filter: true only for a Boolean true reached without error.

        ``attrs`` holds the event's context attributes and extensions by lowercase name.
        """
        if self.type is not Type.BOOLEAN:  # the spec: a non-Boolean result never passes
            return False
        try:
            return self._root.eval(attrs) is True
        except CESQLEvaluationError:
            return False

    def value(self, attrs: Mapping[str, str]) -> Value:
        """Compute the expression's value, raising :class:`CESQLEvaluationError` on an error."""
        return self._root.eval(attrs)

    def parenthesized(self) -> str:
        """The expression as the parser understood it, every operation in parentheses."""
        return self._root.render()


def parse(expression: str) -> Expression:
    """Parse a CESQL v1 expression, raising :class:`CESQLSyntaxError` (with its position)."""
    root = _Parser(expression).parse()
    return Expression(expression, root.type, root)
