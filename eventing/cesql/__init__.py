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

The package, named as the CloudEvents SDK for Go names its ``sql`` packages: :mod:`.types` (the
value types, errors and casts), :mod:`.expression` (the tree and its evaluation),
:mod:`.function` (the built-in functions), :mod:`.parser` (lexer and parser); this module is the
public face, :func:`parse` and :class:`Expression`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from knserve.eventing.cesql.expression import Node
from knserve.eventing.cesql.parser import MAX_DEPTH, Parser
from knserve.eventing.cesql.types import (
    INT_MAX,
    INT_MIN,
    CESQLEvaluationError,
    CESQLSyntaxError,
    Type,
    Value,
)

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_DEPTH",
    "CESQLEvaluationError",
    "CESQLSyntaxError",
    "Expression",
    "Type",
    "Value",
    "parse",
]


@dataclass(frozen=True, eq=False)
class Expression:
    """A parsed CESQL expression: ``source`` as written, ``type`` its static result type."""

    source: str
    type: Type
    _root: Node = field(repr=False)

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
    root = Parser(expression).parse()
    return Expression(expression, root.type, root)
