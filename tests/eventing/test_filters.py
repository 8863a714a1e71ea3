"""Trigger filters: spec.filter.attributes, every spec.filters dialect, precedence and errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knserve.eventing.filters import (
    DIALECTS,
    MAX_DEPTH,
    FilterError,
    all_of,
    any_of,
    compile_filters,
    match_attributes,
    negate,
)

EVENT = {
    "specversion": "1.0",
    "id": "42",
    "source": "https://example.com/orders",
    "type": "com.example.order.created",
    "subject": "order-7",
    "region": "eu-west",  # an extension
}


# ---------------------------------------------------------------------------------------------
# spec.filter.attributes


@pytest.mark.parametrize(
    ("attributes", "passes"),
    [
        ({}, True),
        ({"type": "com.example.order.created"}, True),
        ({"type": "com.example.order.deleted"}, False),
        ({"type": "com.example.order.created", "source": "https://example.com/orders"}, True),
        ({"type": "com.example.order.created", "source": "elsewhere"}, False),
        ({"region": "eu-west"}, True),  # extensions too
        ({"region": "us-east"}, False),
        ({"type": "COM.EXAMPLE.ORDER.CREATED"}, False),  # case sensitive
        ({"type": "com.example"}, False),  # exact, not a prefix
        ({"region": ""}, True),  # empty: any value, but it must exist
        ({"subject": ""}, True),
        ({"dataschema": ""}, False),
        ({"missing": "x"}, False),
        ({"type": "", "region": "eu-west"}, True),
        ({"type": "", "missing": ""}, False),
    ],
)
def test_filter_attributes(attributes: dict[str, str], passes: bool) -> None:
    assert match_attributes(attributes, EVENT) is passes
    assert compile_filters(attributes, None)(EVENT) is passes


def test_an_empty_attribute_value_matches_an_empty_attribute() -> None:
    assert compile_filters({"subject": ""}, None)({**EVENT, "subject": ""})
    assert not compile_filters({"subject": "x"}, None)({**EVENT, "subject": ""})


# ---------------------------------------------------------------------------------------------
# spec.filters: (filters, passes for EVENT)

DIALECT_CASES: list[tuple[list[dict[str, Any]], bool]] = [
    # exact
    ([{"exact": {"type": "com.example.order.created"}}], True),
    ([{"exact": {"type": "com.example.order"}}], False),
    ([{"exact": {"type": "com.example.order.created", "subject": "order-7"}}], True),
    ([{"exact": {"type": "com.example.order.created", "subject": "order-8"}}], False),
    ([{"exact": {"region": "eu-west"}}], True),
    ([{"exact": {"missing": "x"}}], False),
    ([{"exact": {"subject": "ORDER-7"}}], False),
    # prefix
    ([{"prefix": {"type": "com.example."}}], True),
    ([{"prefix": {"type": "com.example.order.created"}}], True),  # a whole value is a prefix
    ([{"prefix": {"type": "com.other."}}], False),
    ([{"prefix": {"type": "example"}}], False),
    ([{"prefix": {"type": "com.", "source": "https://"}}], True),
    ([{"prefix": {"type": "com.", "source": "http://"}}], False),
    ([{"prefix": {"missing": "x"}}], False),
    ([{"prefix": {"type": "COM."}}], False),
    ([{"prefix": {"type": "%"}}], False),  # no wildcards in this dialect
    # suffix
    ([{"suffix": {"type": ".created"}}], True),
    ([{"suffix": {"type": "com.example.order.created"}}], True),
    ([{"suffix": {"type": ".deleted"}}], False),
    ([{"suffix": {"type": "com"}}], False),
    ([{"suffix": {"type": ".created", "region": "-west"}}], True),
    ([{"suffix": {"type": ".created", "region": "-east"}}], False),
    ([{"suffix": {"missing": "x"}}], False),
    # all
    ([{"all": [{"exact": {"region": "eu-west"}}]}], True),
    ([{"all": [{"exact": {"region": "eu-west"}}, {"prefix": {"type": "com."}}]}], True),
    ([{"all": [{"exact": {"region": "eu-west"}}, {"prefix": {"type": "org."}}]}], False),
    ([{"all": [{"exact": {"region": "us"}}, {"prefix": {"type": "com."}}]}], False),
    # any
    ([{"any": [{"exact": {"region": "eu-west"}}]}], True),
    ([{"any": [{"exact": {"region": "us"}}, {"prefix": {"type": "com."}}]}], True),
    ([{"any": [{"exact": {"region": "eu-west"}}, {"prefix": {"type": "org."}}]}], True),
    ([{"any": [{"exact": {"region": "us"}}, {"prefix": {"type": "org."}}]}], False),
    ([{"any": [{"exact": {"missing": "x"}}, {"suffix": {"subject": "-7"}}]}], True),
    # not
    ([{"not": {"exact": {"region": "eu-west"}}}], False),
    ([{"not": {"exact": {"region": "us"}}}], True),
    ([{"not": {"exact": {"missing": "x"}}}], True),  # unlike CESQL, a missing attribute is false
    ([{"not": {"not": {"prefix": {"type": "com."}}}}], True),
    ([{"not": {"any": [{"exact": {"region": "us"}}, {"exact": {"region": "eu"}}]}}], True),
    ([{"not": {"all": [{"prefix": {"type": "com."}}, {"suffix": {"type": "d"}}]}}], False),
    # cesql
    ([{"cesql": "type = 'com.example.order.created'"}], True),
    ([{"cesql": "type LIKE 'com.%.created' AND region IN ('eu-west', 'eu-north')"}], True),
    ([{"cesql": "type LIKE 'com.%.deleted'"}], False),
    ([{"cesql": "INT(id) > 40 AND INT(id) < 50"}], True),
    ([{"cesql": "id > 50"}], False),
    ([{"cesql": "missing = 'x'"}], False),
    ([{"cesql": "NOT (missing = 'x')"}], False),  # fail fast: the error fails the whole filter
    ([{"cesql": "NOT EXISTS missing"}], True),
    ([{"not": {"cesql": "missing = 'x'"}}], True),  # the not dialect negates a failed filter
    ([{"cesql": "EXISTS subject AND LOWER(subject) LIKE 'order-_'"}], True),
    # nested combinations
    (
        [
            {
                "any": [
                    {"all": [{"exact": {"region": "us"}}, {"prefix": {"type": "com."}}]},
                    {"all": [{"exact": {"region": "eu-west"}}, {"not": {"suffix": {"id": "3"}}}]},
                ]
            }
        ],
        True,
    ),
    (
        [
            {
                "all": [
                    {"any": [{"exact": {"subject": "order-1"}}, {"exact": {"subject": "order-2"}}]},
                    {"cesql": "TRUE"},
                ]
            }
        ],
        False,
    ),
    ([{"all": [{"all": [{"all": [{"any": [{"not": {"exact": {"id": "1"}}}]}]}]}]}], True),
    # a list of filters is ANDed
    ([{"exact": {"region": "eu-west"}}, {"suffix": {"type": ".created"}}], True),
    ([{"exact": {"region": "eu-west"}}, {"suffix": {"type": ".deleted"}}], False),
    (
        [
            {"prefix": {"type": "com."}},
            {"cesql": "subject = 'order-7'"},
            {"not": {"exact": {"id": "1"}}},
        ],
        True,
    ),
]


@pytest.mark.parametrize(("filters", "passes"), DIALECT_CASES)
def test_dialects(filters: list[dict[str, Any]], passes: bool) -> None:
    assert compile_filters(None, filters)(EVENT) is passes


def test_filters_accept_a_tuple_and_do_not_keep_references_to_the_spec() -> None:
    spec = {"exact": {"region": "eu-west"}}
    predicate = compile_filters(None, (spec,))
    spec["exact"]["region"] = "changed"
    assert predicate(EVENT)


# ---------------------------------------------------------------------------------------------
# filter vs filters


@pytest.mark.parametrize(
    ("attributes", "filters", "passes"),
    [
        (None, None, True),  # no filter at all: everything passes
        ({}, None, True),
        (None, [], True),
        ({}, [], True),
        ({"region": "us"}, None, False),
        ({"region": "us"}, [], False),  # an empty filters list does not override
        ({"region": "us"}, [{"exact": {"region": "eu-west"}}], True),  # filters wins...
        ({"region": "eu-west"}, [{"exact": {"region": "us"}}], False),  # ...both ways
        ({"region": ""}, [{"not": {"exact": {"region": "eu-west"}}}], False),
    ],
)
def test_filters_win_over_filter(
    attributes: dict[str, str] | None, filters: list[dict[str, Any]] | None, passes: bool
) -> None:
    assert compile_filters(attributes, filters)(EVENT) is passes


def test_filter_attributes_are_validated_even_when_filters_win() -> None:
    with pytest.raises(FilterError, match=r'^spec\.filter\.attributes: invalid attribute name "A"'):
        compile_filters({"A": "x"}, [{"exact": {"region": "eu-west"}}])


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


# ---------------------------------------------------------------------------------------------
# Properties over random filter trees, checked against a reference and against CESQL

NAMES = st.sampled_from(["type", "source", "subject", "region"])
VALUES = st.text("ab._%", min_size=1, max_size=3)  # "." "_" "%" exercise LIKE escaping
EVENTS = st.fixed_dictionaries(
    {},
    optional={
        name: st.text("ab._%", max_size=4) for name in ["type", "source", "subject", "region"]
    },
)


def _leaf(dialect: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(NAMES, VALUES, min_size=1, max_size=2).map(lambda m: {dialect: m})


LEAVES = st.one_of(_leaf("exact"), _leaf("prefix"), _leaf("suffix"))
FILTERS = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda fs: {"all": fs}),
        st.lists(children, min_size=1, max_size=3).map(lambda fs: {"any": fs}),
        children.map(lambda f: {"not": f}),
    ),
    max_leaves=10,
)


def reference(spec: dict[str, Any], attrs: dict[str, str]) -> bool:
    """The dialect's definition, written as plainly as possible."""
    ((dialect, value),) = spec.items()
    if dialect == "exact":
        return all(name in attrs and attrs[name] == v for name, v in value.items())
    if dialect == "prefix":
        return all(name in attrs and attrs[name][: len(v)] == v for name, v in value.items())
    if dialect == "suffix":
        return all(
            name in attrs and attrs[name][len(attrs[name]) - len(v) :] == v
            for name, v in value.items()
        )
    if dialect == "all":
        return all(reference(f, attrs) for f in value)
    if dialect == "any":
        return any(reference(f, attrs) for f in value)
    return not reference(value, attrs)


def to_cesql(spec: dict[str, Any]) -> str:
    """The same filter as one CESQL expression (the spec's Subscriptions API recreations)."""
    ((dialect, value),) = spec.items()

    def like(text: str) -> str:
        return text.replace("%", "\\%").replace("_", "\\_")

    if dialect in ("exact", "prefix", "suffix"):
        tests = []
        for name, v in value.items():
            test = {
                "exact": f"{name} = '{v}'",
                "prefix": f"{name} LIKE '{like(v)}%'",
                "suffix": f"{name} LIKE '%{like(v)}'",
            }[dialect]
            tests.append(f"(EXISTS {name} AND {test})")  # EXISTS first: no missing-attribute error
        return "(" + " AND ".join(tests) + ")"
    if dialect in ("all", "any"):
        joiner = " AND " if dialect == "all" else " OR "
        return "(" + joiner.join(to_cesql(f) for f in value) + ")"
    return f"(NOT {to_cesql(value)})"


@given(FILTERS, EVENTS)
def test_filters_match_the_reference(spec: dict[str, Any], attrs: dict[str, str]) -> None:
    assert compile_filters(None, [spec])(attrs) is reference(spec, attrs)


@given(FILTERS, EVENTS)
def test_filters_match_their_cesql_translation(spec: dict[str, Any], attrs: dict[str, str]) -> None:
    expression = to_cesql(spec)
    assert compile_filters(None, [{"cesql": expression}])(attrs) is compile_filters(None, [spec])(
        attrs
    )


@given(FILTERS, EVENTS)
def test_not_inverts(spec: dict[str, Any], attrs: dict[str, str]) -> None:
    assert compile_filters(None, [{"not": spec}])(attrs) is not compile_filters(None, [spec])(attrs)
    assert compile_filters(None, [{"not": {"not": spec}}])(attrs) is compile_filters(None, [spec])(
        attrs
    )


@given(st.lists(FILTERS, min_size=1, max_size=4), EVENTS)
def test_de_morgan(specs: list[dict[str, Any]], attrs: dict[str, str]) -> None:
    not_any = compile_filters(None, [{"not": {"any": specs}}])(attrs)
    all_not = compile_filters(None, [{"all": [{"not": s} for s in specs]}])(attrs)
    assert not_any is all_not


@given(st.lists(FILTERS, min_size=1, max_size=4), EVENTS)
def test_a_list_of_filters_is_all(specs: list[dict[str, Any]], attrs: dict[str, str]) -> None:
    assert compile_filters(None, specs)(attrs) is compile_filters(None, [{"all": specs}])(attrs)
    assert compile_filters(None, specs)(attrs) is all(
        compile_filters(None, [s])(attrs) for s in specs
    )


@given(FILTERS, EVENTS)
def test_all_and_any_of_one_filter_are_that_filter(
    spec: dict[str, Any], attrs: dict[str, str]
) -> None:
    alone = compile_filters(None, [spec])(attrs)
    assert compile_filters(None, [{"all": [spec]}])(attrs) is alone
    assert compile_filters(None, [{"any": [spec]}])(attrs) is alone


@given(st.dictionaries(NAMES, st.text("ab", max_size=2), max_size=3), FILTERS, EVENTS)
def test_non_empty_filters_ignore_filter_attributes(
    attributes: dict[str, str], spec: dict[str, Any], attrs: dict[str, str]
) -> None:
    assert compile_filters(attributes, [spec])(attrs) is compile_filters(None, [spec])(attrs)


@given(EVENTS, st.data())
def test_filter_attributes_taken_from_the_event_match_it(
    attrs: dict[str, str], data: st.DataObject
) -> None:
    names = data.draw(
        st.lists(st.sampled_from(sorted(attrs)), unique=True) if attrs else st.just([])
    )
    blank = data.draw(st.sets(st.sampled_from(names)) if names else st.just(set()))
    expected = {name: "" if name in blank else attrs[name] for name in names}
    assert compile_filters(expected, None)(attrs)
    assert not compile_filters({**expected, "absent": ""}, None)(attrs)


@given(EVENTS)
def test_combinator_identities(attrs: dict[str, str]) -> None:
    # The spec rejects empty all/any (the CRD: "must contain at least one filter expression");
    # the combinators underneath keep the identities of AND and OR.
    assert all_of([])(attrs) is True
    assert any_of([])(attrs) is False
    yes, no = (lambda _: True), (lambda _: False)
    assert negate(yes)(attrs) is False
    assert negate(negate(no))(attrs) is False
    assert all_of([yes, no])(attrs) is False
    assert any_of([no, yes])(attrs) is True


def test_combinators_short_circuit() -> None:
    calls: list[str] = []

    def spy(name: str, result: bool):
        return lambda _: calls.append(name) or result

    assert not all_of([spy("a", False), spy("b", True)])({})
    assert any_of([spy("c", True), spy("d", True)])({})
    assert calls == ["a", "c"]


def test_dialects_constant_lists_every_dialect() -> None:
    assert set(DIALECTS) == {"exact", "prefix", "suffix", "all", "any", "not", "cesql"}
