"""Trigger filters as pure predicates over a CloudEvent's attributes.

A Trigger selects events with ``spec.filter.attributes`` (Knative's original exact match) or with
``spec.filters``, the CloudEvents Subscriptions API dialect Knative adopted: ``exact``,
``prefix``, ``suffix``, ``all``, ``any``, ``not`` and ``cesql``. :func:`compile_filters`
validates both up front -- raising :class:`FilterError`, which names the offending field by its
path and says what to write instead -- and returns one predicate for the delivery loop.

An event is given as its attributes: a ``Mapping[str, str]`` of context attributes and
extensions by (lowercase) name; ``data`` is not an attribute. Semantics follow Knative:

* ``spec.filter.attributes``: every key must be present; a non-empty value must match exactly,
  an empty one matches any value. No keys: every event passes.
* ``spec.filters``: a list of filters that must all pass. ``exact``/``prefix``/``suffix`` map
  attribute names to non-empty strings, all of which must match an attribute that exists
  (Knative's webhook allows one key; several are accepted here, ANDed, as the CRD describes).
  ``all`` and ``any`` hold at least one filter, as the CRD says -- an empty one is rejected
  rather than guessed at (Knative itself silently ignores it, so ``any: []`` lets everything
  through). ``not`` holds one filter; ``cesql`` a CESQL expression (see
  :mod:`knserve.eventing.cesql`), which must be a condition (Boolean).
* When both are given, a non-empty ``spec.filters`` wins (both are still validated).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from knserve.eventing import cesql

__all__ = [
    "DIALECTS",
    "FilterError",
    "Predicate",
    "all_of",
    "any_of",
    "compile_filters",
    "match_attributes",
    "negate",
]

Attributes = Mapping[str, str]
Predicate = Callable[[Attributes], bool]

DIALECTS = ("exact", "prefix", "suffix", "all", "any", "not", "cesql")
MAX_DEPTH = 50  # nesting of all/any/not: bounds recursion on hostile input
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9]*")  # Knative's webhook rule for filter keys


class FilterError(ValueError):
    """An invalid trigger filter; ``path`` is where (``spec.filters[1].any[0]``), ``str()`` why."""

    def __init__(self, path: str, message: str) -> None:
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}")


# ---------------------------------------------------------------------------------------------
# Predicates


def match_attributes(expected: Mapping[str, str], attrs: Attributes) -> bool:
    """Knative's ``spec.filter.attributes`` match: all keys present, non-empty values equal."""
    for name, value in expected.items():
        actual = attrs.get(name)
        if actual is None or (value != "" and actual != value):
            return False
    return True


def all_of(predicates: Sequence[Predicate]) -> Predicate:
    """Pass when every predicate passes (short-circuit, in order); ``all_of([])`` always passes."""
    if len(predicates) == 1:
        return predicates[0]
    items = tuple(predicates)

    def every(attrs: Attributes) -> bool:
        # A loop, not all() over a generator: this runs per event per trigger, and the
        # generator costs more than the checks it runs.
        for predicate in items:  # noqa: SIM110
            if not predicate(attrs):
                return False
        return True

    return every


def any_of(predicates: Sequence[Predicate]) -> Predicate:
    """Pass when some predicate passes (short-circuit, in order); ``any_of([])`` never passes."""
    if len(predicates) == 1:
        return predicates[0]
    items = tuple(predicates)
    return lambda attrs: any(predicate(attrs) for predicate in items)


def negate(predicate: Predicate) -> Predicate:
    """Pass exactly when ``predicate`` does not."""
    return lambda attrs: not predicate(attrs)


def _always(attrs: Attributes) -> bool:
    return True


def _exact(expected: Mapping[str, str]) -> Predicate:
    items = tuple(expected.items())
    # A missing attribute reads as None, which never equals a (non-empty) filter value.
    if len(items) == 1:  # the usual filter (on type): one comparison, no loop
        ((name, value),) = items
        return lambda attrs: attrs.get(name) == value

    def every(attrs: Attributes) -> bool:
        for name, value in items:  # noqa: SIM110 (a loop: all() over a generator costs more)
            if attrs.get(name) != value:
                return False
        return True

    return every


def _affix(expected: Mapping[str, str], at_start: bool) -> Predicate:
    items = tuple(expected.items())

    def matches(attrs: Attributes) -> bool:
        for name, value in items:
            actual = attrs.get(name)
            if actual is None:
                return False
            if not (actual.startswith(value) if at_start else actual.endswith(value)):
                return False
        return True

    return matches


# ---------------------------------------------------------------------------------------------
# Validation and compilation


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f'a string ("{value}")'
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _and_list(names: Sequence[str]) -> str:
    quoted = [f'"{name}"' for name in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _attribute_map(value: Any, path: str, dialect: str | None) -> dict[str, str]:
    """Check a map of attribute names to strings; ``dialect`` None is ``spec.filter.attributes``."""
    if not isinstance(value, Mapping):
        raise FilterError(
            path, f"must be a mapping of attribute names to values, got {_describe(value)}"
        )
    if dialect and not value:
        example = {"exact": "com.example.event", "prefix": "com.example.", "suffix": ".created"}
        raise FilterError(
            path, f'needs at least one attribute, e.g. {{"type": "{example[dialect]}"}}'
        )
    for name, text in value.items():
        if not isinstance(name, str) or not _ATTRIBUTE_NAME.fullmatch(name):
            raise FilterError(
                path,
                f'invalid attribute name "{name}": attribute names are lowercase letters and '
                "digits, starting with a letter",
            )
        if not isinstance(text, str):
            raise FilterError(
                path, f'the value for "{name}" must be a string, got {_describe(text)}; quote it'
            )
        if dialect and text == "":
            raise FilterError(
                path,
                f'the value for "{name}" must not be empty (to match any value of an attribute '
                f'that exists, use cesql: "EXISTS {name}")',
            )
    return dict(value)


def _filter_list(value: Any, path: str, depth: int) -> list[Predicate]:
    if not isinstance(value, list | tuple):
        hint = (
            "; write each filter as a list item (- exact: ...)"
            if isinstance(value, Mapping)
            else ""
        )
        raise FilterError(path, f"must be a list of filters, got {_describe(value)}{hint}")
    if not value:
        raise FilterError(path, "must contain at least one filter")
    return [_compile(item, f"{path}[{i}]", depth) for i, item in enumerate(value)]


_ARTICLE = {cesql.Type.STRING: "a", cesql.Type.INTEGER: "an"}


def _cesql(value: Any, path: str) -> Predicate:
    if not isinstance(value, str):
        raise FilterError(
            path, f"must be a string holding a CESQL expression, got {_describe(value)}"
        )
    if not value.strip():
        raise FilterError(path, "must not be empty")
    try:
        expression = cesql.parse(value)
    except cesql.CESQLSyntaxError as err:
        where = f'syntax error at position {err.position} of "{value}"'
        raise FilterError(path, f"{where}: {err.message}") from None
    if expression.type is not cesql.Type.BOOLEAN:
        raise FilterError(
            path,
            f"the expression yields {_ARTICLE[expression.type]} {expression.type.value}, not a "
            "Boolean, so no event would ever pass; write a condition, such as a comparison",
        )
    return expression.evaluate


def _compile(spec: Any, path: str, depth: int) -> Predicate:
    if depth > MAX_DEPTH:
        raise FilterError(path, f"filters are nested more than {MAX_DEPTH} levels deep")
    if not isinstance(spec, Mapping):
        raise FilterError(
            path,
            f"a filter is a mapping with one dialect key ({', '.join(DIALECTS)}), "
            f"got {_describe(spec)}",
        )
    for key in spec:
        if key not in DIALECTS:
            close = difflib.get_close_matches(str(key), DIALECTS, n=1)
            hint = f'did you mean "{close[0]}"?' if close else f"use one of {', '.join(DIALECTS)}"
            raise FilterError(path, f'unknown filter dialect "{key}"; {hint}')
    if len(spec) != 1:
        got = _and_list(list(spec)) if spec else "none"
        raise FilterError(path, f"a filter has exactly one dialect key, got {got}")
    ((dialect, value),) = spec.items()
    where = f"{path}.{dialect}"
    if dialect == "exact":
        return _exact(_attribute_map(value, where, dialect))
    if dialect in ("prefix", "suffix"):
        return _affix(_attribute_map(value, where, dialect), at_start=dialect == "prefix")
    if dialect == "all":
        return all_of(_filter_list(value, where, depth + 1))
    if dialect == "any":
        return any_of(_filter_list(value, where, depth + 1))
    if dialect == "not":
        if not isinstance(value, Mapping):
            hint = "; to negate several, put them in all or any" if isinstance(value, list) else ""
            raise FilterError(
                where, f"must be one filter (a mapping), got {_describe(value)}{hint}"
            )
        return negate(_compile(value, where, depth + 1))
    return _cesql(value, where)


def compile_filters(
    filter_attrs: Mapping[str, str] | None,
    filters: Sequence[Mapping[str, Any]] | None,
) -> Predicate:
    """Validate a Trigger's filters and return the predicate that selects its events.

    ``filter_attrs`` is ``spec.filter.attributes`` and ``filters`` is ``spec.filters`` (either
    may be None). A non-empty ``filters`` wins over ``filter_attrs``, as in Knative; with
    neither, every event passes. Raises :class:`FilterError` for the first invalid field.
    """
    attributes: dict[str, str] = {}
    if filter_attrs is not None:
        attributes = _attribute_map(filter_attrs, "spec.filter.attributes", None)
    if filters is not None and not isinstance(filters, list | tuple):
        raise FilterError("spec.filters", f"must be a list of filters, got {_describe(filters)}")
    if filters:
        return all_of([_compile(spec, f"spec.filters[{i}]", 1) for i, spec in enumerate(filters)])
    if attributes and all(attributes.values()):
        return _exact(attributes)  # no "any value" entries: an exact match, the cheaper way
    if attributes:
        return lambda attrs: match_attributes(attributes, attrs)
    return _always
