"""Trigger filters: spec.filter.attributes, every spec.filters dialect, precedence, and properties
over random filter trees (every error message: test_filter_errors.py)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knserve.eventing.filters import (
    DIALECTS,
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
