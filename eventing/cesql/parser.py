"""CESQL's lexer and recursive-descent parser: text to an expression tree.

The grammar's precedence (section 3.6) is the call order of :class:`Parser`'s methods, loosest
first. Types are static (attributes are always String), so the parser inserts every implicit cast
(a :class:`~knserve.eventing.cesql.expression.Cast` node) and checks function names and argument
counts, and it bounds the nesting so a hostile expression is a syntax error, not a RecursionError.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from knserve.eventing.cesql.expression import (
    Attribute,
    Binary,
    Call,
    Cast,
    Exists,
    In,
    Like,
    Literal,
    Logic,
    Node,
    Unary,
)
from knserve.eventing.cesql.function import FUNCTIONS
from knserve.eventing.cesql.types import INT_MAX, INT_MIN, B, CESQLSyntaxError, I, S, Type

# Bounds recursion in the parser and the evaluator, so a hostile expression is a syntax error
# rather than a RecursionError. Chains of one logical operator are flattened and do not count.
MAX_DEPTH = 50

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
class Token:
    kind: str  # string, int, word, keyword, op or end
    text: str  # as written; keywords upper-cased, strings unescaped
    position: int

    def __str__(self) -> str:
        return "the end of the expression" if self.kind == "end" else f'"{self.text}"'


def _unescape(body: str, quote: str) -> str:
    # Only the delimiting quote is escaped; other backslashes stay, for LIKE's \% and \_.
    return re.sub(r"\\(.)", lambda m: m[1] if m[1] == quote else m[0], body, flags=re.DOTALL)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return [*tokens, Token("end", "", pos)]
        match = _TOKENS.match(text, pos)
        if match is None:
            what = "unterminated string" if text[pos] in "'\"" else f'unexpected "{text[pos]}"'
            raise CESQLSyntaxError(what, pos, text)
        kind, raw = match.lastgroup or "", match[0]
        if kind == "string":
            tokens.append(Token("string", _unescape(raw[1:-1], raw[0]), pos))
        elif kind == "word" and raw.upper() in _KEYWORDS:
            tokens.append(Token("keyword", raw.upper(), pos))
        elif kind == "word" and raw.isdigit():
            tokens.append(Token("int", raw, pos))
        else:
            tokens.append(Token(kind, raw, pos))
        pos = match.end()


class Parser:
    def __init__(self, text: str) -> None:
        self.text, self.tokens, self.index, self.nesting = text, tokenize(text), 0, 0

    # -- helpers
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def take(self) -> Token:
        token = self.peek()
        self.index += 1
        return token

    def at(self, *texts: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind in ("op", "keyword") and token.text in texts

    def error(self, message: str, token: Token | None = None) -> CESQLSyntaxError:
        return CESQLSyntaxError(message, (token or self.peek()).position, self.text)

    def expect(self, text: str, context: str) -> Token:
        if not self.at(text):
            raise self.error(f'expected "{text}" {context}, found {self.peek()}')
        return self.take()

    def node(self, node: Node, token: Token) -> Node:
        children = [v for v in vars(node).values() if isinstance(v, Node)]
        children += [n for v in vars(node).values() if isinstance(v, list) for n in v]
        node.depth = 1 + max((child.depth for child in children), default=0)
        if node.depth > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep", token)
        return node

    def cast(self, node: Node, target: Type) -> Node:
        if node.type is target:
            return node
        cast = Cast(node, target)
        cast.depth = node.depth + 1
        return cast

    # -- grammar, loosest binding first
    def parse(self) -> Node:
        """The whole text as one expression (a syntax error for anything left over)."""
        if self.peek().kind == "end":
            raise self.error("empty expression")
        node = self.logic()
        if self.peek().kind != "end":
            raise self.error(f"expected an operator or the end, found {self.peek()}")
        return node

    def logic(self) -> Node:
        self.nesting += 1
        if self.nesting > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} levels deep")
        node = self.comparison()
        while self.at("AND", "OR", "XOR"):
            token = self.take()
            right = self.cast(self.comparison(), B)
            if isinstance(node, Logic) and node.op == token.text:
                node.operands.append(right)  # same operator: associative, so flatten
                node.depth = max(node.depth, right.depth + 1)
            else:
                node = self.node(Logic(token.text, [self.cast(node, B), right]), token)
        self.nesting -= 1
        return node

    def comparison(self) -> Node:
        node = self.additive()
        while self.at(*_COMPARISONS):
            token = self.take()
            right = self.additive()
            if token.text in ("=", "!=", "<>"):  # ambiguous: the right side picks the type
                left = self.cast(node, right.type)
            else:
                left, right = self.cast(node, I), self.cast(right, I)
            node = self.node(Binary(token.text, left, right, B), token)
        return node

    def additive(self) -> Node:
        return self.arithmetic(("+", "-"), self.multiplicative)

    def multiplicative(self) -> Node:
        return self.arithmetic(("*", "/", "%"), self.postfix)

    def arithmetic(self, ops: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        node = operand()
        while self.at(*ops):
            token = self.take()
            right = self.cast(operand(), I)
            node = self.node(Binary(token.text, self.cast(node, I), right, I), token)
        return node

    def postfix(self) -> Node:
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
                node = self.node(Like(self.cast(node, S), pattern.text, negated), token)
            else:
                self.expect("(", "after IN")
                if self.at(")"):
                    raise self.error("IN needs at least one value between the parentheses")
                items = [self.cast(self.logic(), node.type)]
                while self.at(","):
                    self.take()
                    items.append(self.cast(self.logic(), node.type))
                self.expect(")", "to close the IN list")
                node = self.node(In(node, items, negated), token)
        return node

    def unary(self) -> Node:
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
            return self.node(Unary(token.text, self.cast(operand, target), target), token)
        return self.primary()

    def integer(self, token: Token, negative: bool = False) -> Node:
        value = -int(token.text) if negative else int(token.text)
        if not INT_MIN <= value <= INT_MAX:
            raise self.error(f"integer {value} is outside the 32-bit range", token)
        return Literal(value, I)

    def primary(self) -> Node:
        token = self.take()
        if token.kind == "string":
            return Literal(token.text, S)
        if token.kind == "int":
            return self.integer(token)
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
            return Literal(token.text == "TRUE", B)
        if token.kind == "keyword" and token.text == "EXISTS":
            name = self.take()
            if name.kind not in ("word", "int"):
                raise self.error(f"EXISTS needs an attribute name, found {name}", name)
            return Exists(self.identifier(name))
        if token.kind == "op" and token.text == "(":
            node = self.logic()
            self.expect(")", f"to close the one at position {token.position}")
            return node
        if token.kind == "word" and self.at("("):
            return self.call(token)
        if token.kind in ("word", "int"):
            return Attribute(self.identifier(token))
        what = 'a value (a literal, an attribute, a function call, EXISTS or "(")'
        raise self.error(f"expected {what}, found {token}", token)

    def identifier(self, token: Token) -> str:
        if not _IDENTIFIER.fullmatch(token.text):
            lower = token.text.lower()
            hint = f' (did you mean "{lower}"?)' if _IDENTIFIER.fullmatch(lower) else ""
            message = "CloudEvents attribute names are lowercase letters and digits"
            raise self.error(f"invalid attribute name {token}: {message}{hint}", token)
        return token.text

    def call(self, name: Token) -> Node:
        function = FUNCTIONS.get(name.text.upper())
        if function is None:
            known = ", ".join(sorted(FUNCTIONS))
            raise self.error(f"unknown function {name}; the built-in ones are {known}", name)
        self.take()  # "("
        args: list[Node] = []
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
        return self.node(Call(name.text.upper(), function, args), name)
