"""Trigger filters' errors: every message, whole, the first invalid filter reported, bounded
nesting."""

from __future__ import annotations

from typing import Any

import pytest

from knserve.eventing.filters import (
    MAX_DEPTH,
    FilterError,
    compile_filters,
)

# ---------------------------------------------------------------------------------------------
# Every error message: (filter attributes, filters, the whole message)

NAME_RULE = "attribute names are lowercase letters and digits, starting with a letter"
ONE_KEY = "a filter is a mapping with one dialect key (exact, prefix, suffix, all, any, not, cesql)"

ERROR_CASES: list[tuple[Any, Any, str]] = [
    # spec.filter.attributes
    (
        ["type"],
        None,
        "spec.filter.attributes: must be a mapping of attribute names to values, got a list",
    ),
    (
        "type=x",
        None,
        'spec.filter.attributes: must be a mapping of attribute names to values, got a string ("type=x")',
    ),
    ({"Type": "x"}, None, f'spec.filter.attributes: invalid attribute name "Type": {NAME_RULE}'),
    ({"1type": "x"}, None, f'spec.filter.attributes: invalid attribute name "1type": {NAME_RULE}'),
    (
        {"my-ext": "x"},
        None,
        f'spec.filter.attributes: invalid attribute name "my-ext": {NAME_RULE}',
    ),
    ({"": "x"}, None, f'spec.filter.attributes: invalid attribute name "": {NAME_RULE}'),
    ({1: "x"}, None, f'spec.filter.attributes: invalid attribute name "1": {NAME_RULE}'),
    (
        {"seq": 5},
        None,
        'spec.filter.attributes: the value for "seq" must be a string, got a number (5); quote it',
    ),
    (
        {"ok": True},
        None,
        'spec.filter.attributes: the value for "ok" must be a string, got a boolean (true); quote it',
    ),
    (
        {"ok": None},
        None,
        'spec.filter.attributes: the value for "ok" must be a string, got null; quote it',
    ),
    # spec.filters
    (None, {"exact": {"type": "x"}}, "spec.filters: must be a list of filters, got a mapping"),
    (None, "type = 'x'", "spec.filters: must be a list of filters, got a string (\"type = 'x'\")"),
    (None, ["exact"], f'spec.filters[0]: {ONE_KEY}, got a string ("exact")'),
    (None, [None], f"spec.filters[0]: {ONE_KEY}, got null"),
    (None, [[{"exact": {"a": "b"}}]], f"spec.filters[0]: {ONE_KEY}, got a list"),
    (None, [{}], "spec.filters[0]: a filter has exactly one dialect key, got none"),
    (
        None,
        [{"exact": {"a": "b"}}, {"any": [{"exact": {"a": "b"}, "prefix": {"a": "b"}}]}],
        'spec.filters[1].any[0]: a filter has exactly one dialect key, got "exact" and "prefix"',
    ),
    (
        None,
        [{"exact": {"a": "b"}, "prefix": {"a": "b"}, "cesql": "TRUE"}],
        'spec.filters[0]: a filter has exactly one dialect key, got "exact", "prefix" and "cesql"',
    ),
    (
        None,
        [{"exakt": {"a": "b"}}],
        'spec.filters[0]: unknown filter dialect "exakt"; did you mean "exact"?',
    ),
    (
        None,
        [{"sql": "TRUE"}],
        'spec.filters[0]: unknown filter dialect "sql"; did you mean "cesql"?',
    ),
    (
        None,
        [{"Exact": {"a": "b"}}],
        'spec.filters[0]: unknown filter dialect "Exact"; did you mean "exact"?',
    ),
    (
        None,
        [{"regex": "a.*"}],
        'spec.filters[0]: unknown filter dialect "regex"; use one of exact, prefix, suffix, all, any, not, cesql',
    ),
    (
        None,
        [{"exact": {"a": "b"}, "attributes": {"a": "b"}}],
        'spec.filters[0]: unknown filter dialect "attributes"; use one of exact, prefix, suffix, all, any, not, cesql',
    ),
    # exact / prefix / suffix
    (
        None,
        [{"exact": {}}],
        'spec.filters[0].exact: needs at least one attribute, e.g. {"type": "com.example.event"}',
    ),
    (
        None,
        [{"prefix": {}}],
        'spec.filters[0].prefix: needs at least one attribute, e.g. {"type": "com.example."}',
    ),
    (
        None,
        [{"suffix": {}}],
        'spec.filters[0].suffix: needs at least one attribute, e.g. {"type": ".created"}',
    ),
    (
        None,
        [{"exact": None}],
        "spec.filters[0].exact: must be a mapping of attribute names to values, got null",
    ),
    (
        None,
        [{"prefix": "com."}],
        'spec.filters[0].prefix: must be a mapping of attribute names to values, got a string ("com.")',
    ),
    (
        None,
        [{"suffix": [{"type": "x"}]}],
        "spec.filters[0].suffix: must be a mapping of attribute names to values, got a list",
    ),
    (
        None,
        [{"prefix": {"type": ""}}],
        'spec.filters[0].prefix: the value for "type" must not be empty (to match any value of an '
        'attribute that exists, use cesql: "EXISTS type")',
    ),
    (
        None,
        [{"exact": {"type": "x", "source": ""}}],
        'spec.filters[0].exact: the value for "source" must not be empty (to match any value of an '
        'attribute that exists, use cesql: "EXISTS source")',
    ),
    (
        None,
        [{"suffix": {"type": ""}}],
        'spec.filters[0].suffix: the value for "type" must not be empty (to match any value of an '
        'attribute that exists, use cesql: "EXISTS type")',
    ),
    (
        None,
        [{"exact": {"Type": "x"}}],
        f'spec.filters[0].exact: invalid attribute name "Type": {NAME_RULE}',
    ),
    (
        None,
        [{"suffix": {"a_b": "x"}}],
        f'spec.filters[0].suffix: invalid attribute name "a_b": {NAME_RULE}',
    ),
    (
        None,
        [{"exact": {"sequence": 5}}],
        'spec.filters[0].exact: the value for "sequence" must be a string, got a number (5); quote it',
    ),
    (
        None,
        [{"prefix": {"x": 1.5}}],
        'spec.filters[0].prefix: the value for "x" must be a string, got a number (1.5); quote it',
    ),
    (
        None,
        [{"suffix": {"x": ["a"]}}],
        'spec.filters[0].suffix: the value for "x" must be a string, got a list; quote it',
    ),
    # all / any
    (None, [{"all": []}], "spec.filters[0].all: must contain at least one filter"),
    (None, [{"any": []}], "spec.filters[0].any: must contain at least one filter"),
    (
        None,
        [{"any": {"exact": {"a": "b"}}}],
        "spec.filters[0].any: must be a list of filters, got a mapping; write each filter as a list item (- exact: ...)",
    ),
    (None, [{"all": None}], "spec.filters[0].all: must be a list of filters, got null"),
    (None, [{"all": "x"}], 'spec.filters[0].all: must be a list of filters, got a string ("x")'),
    (
        None,
        [
            {
                "all": [
                    {"exact": {"a": "b"}},
                    {"any": [{"prefix": {"a": "b"}}, {"not": {"suffix": {"a": ""}}}]},
                ]
            }
        ],
        'spec.filters[0].all[1].any[1].not.suffix: the value for "a" must not be empty (to match '
        'any value of an attribute that exists, use cesql: "EXISTS a")',
    ),
    # not
    (
        None,
        [{"not": [{"exact": {"a": "b"}}]}],
        "spec.filters[0].not: must be one filter (a mapping), got a list; to negate several, put them in all or any",
    ),
    (None, [{"not": None}], "spec.filters[0].not: must be one filter (a mapping), got null"),
    (None, [{"not": {}}], "spec.filters[0].not: a filter has exactly one dialect key, got none"),
    (None, [{"not": {"any": []}}], "spec.filters[0].not.any: must contain at least one filter"),
    # cesql
    (None, [{"cesql": ""}], "spec.filters[0].cesql: must not be empty"),
    (None, [{"cesql": "   "}], "spec.filters[0].cesql: must not be empty"),
    (
        None,
        [{"cesql": None}],
        "spec.filters[0].cesql: must be a string holding a CESQL expression, got null",
    ),
    (
        None,
        [{"cesql": True}],
        "spec.filters[0].cesql: must be a string holding a CESQL expression, got a boolean (true)",
    ),
    (
        None,
        [{"cesql": "(type = 'a'"}],
        'spec.filters[0].cesql: syntax error at position 11 of "(type = \'a\'": expected ")" to '
        "close the one at position 0, found the end of the expression",
    ),
    (
        None,
        [{"cesql": "Type = 'a'"}],
        "spec.filters[0].cesql: syntax error at position 0 of \"Type = 'a'\": invalid attribute name "
        '"Type": CloudEvents attribute names are lowercase letters and digits (did you mean "type"?)',
    ),
    (
        None,
        [{"any": [{"cesql": "TRUE"}, {"cesql": "SUBSTR(type, 1) = 'c'"}]}],
        "spec.filters[0].any[1].cesql: syntax error at position 0 of \"SUBSTR(type, 1) = 'c'\": "
        'unknown function "SUBSTR"; the built-in ones are ABS, BOOL, CONCAT, CONCAT_WS, INT, '
        "IS_BOOL, IS_INT, LEFT, LENGTH, LOWER, RIGHT, STRING, SUBSTRING, TRIM, UPPER",
    ),
    (
        None,
        [{"cesql": "type"}],
        "spec.filters[0].cesql: the expression yields a String, not a Boolean, so no event "
        "would ever pass; write a condition, such as a comparison",
    ),
    (
        None,
        [{"cesql": "LENGTH(type) + 1"}],
        "spec.filters[0].cesql: the expression yields an Integer, not a Boolean, so no event "
        "would ever pass; write a condition, such as a comparison",
    ),
]


@pytest.mark.parametrize(("attributes", "filters", "message"), ERROR_CASES)
def test_errors(attributes: Any, filters: Any, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        compile_filters(attributes, filters)
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)
    path, _, rest = message.partition(": ")
    assert (caught.value.path, caught.value.message) == (path, rest)


def test_the_first_invalid_filter_is_reported() -> None:
    with pytest.raises(FilterError, match=r"^spec\.filters\[1\]"):
        compile_filters(None, [{"exact": {"a": "b"}}, {}, {"bogus": 1}])


def test_nesting_is_bounded() -> None:
    spec: dict[str, Any] = {"exact": {"a": "b"}}
    for _ in range(MAX_DEPTH - 1):
        spec = {"not": spec}
    assert compile_filters(None, [spec])({"a": "b"}) is (MAX_DEPTH % 2 == 1)
    for _ in range(1000):
        spec = {"all": [spec]}
    with pytest.raises(FilterError, match=f"filters are nested more than {MAX_DEPTH} levels deep"):
        compile_filters(None, [spec])
