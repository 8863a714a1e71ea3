"""Traffic: exact percent splits, tags, header routing and Host parsing, as pure functions."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from knserve.knative.activator.traffic import (
    Destination,
    RouteSpec,
    RouteTable,
    TrafficTarget,
    WeightedRoundRobin,
    normalize_host,
    route_hosts,
)


def route(name: str = "iris", namespace: str = "default", *targets: TrafficTarget) -> RouteSpec:
    return RouteSpec(namespace, name, targets or (TrafficTarget(f"{name}-00001", 100),))


def picks(table: RouteTable, host: str, count: int, tag: str | None = None) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(count):
        destination = table.resolve(host, tag)
        assert destination is not None
        counts[destination.revision] += 1
    return counts


# -- the split -------------------------------------------------------------------------------------
def test_split_80_20_over_1000_requests_is_exact() -> None:
    table = RouteTable()
    table.set_route(
        route("iris", "default", TrafficTarget("iris-1", 80), TrafficTarget("iris-2", 20))
    )
    assert picks(table, "iris.default.localhost", 1000) == {"iris-1": 800, "iris-2": 200}


def test_every_window_of_100_picks_holds_the_percents_exactly() -> None:
    split = WeightedRoundRobin([("a", 37), ("b", 50), ("c", 13)])
    sequence = [split.pick() for _ in range(1000)]
    for start in range(0, 1000, 100):
        assert Counter(sequence[start : start + 100]) == {"a": 37, "b": 50, "c": 13}


def test_split_interleaves_rather_than_bunching() -> None:
    split = WeightedRoundRobin([("a", 50), ("b", 50)])
    assert [split.pick() for _ in range(6)] == ["a", "b", "a", "b", "a", "b"]
    split = WeightedRoundRobin([("a", 80), ("b", 20)])
    sequence = [split.pick() for _ in range(10)]
    # b comes once in every five picks, never twice in a row.
    assert sequence.count("b") == 2
    assert "bb" not in "".join(s or "" for s in sequence)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=6), st.integers(1, 5))
def test_any_split_summing_to_100_is_exact_over_whole_windows(raw: list[int], windows: int) -> None:
    # Scale arbitrary weights into percents that sum to exactly 100.
    total = sum(raw) or 1
    percents = [w * 100 // total for w in raw]
    percents[0] += 100 - sum(percents)
    split = WeightedRoundRobin([(f"r{i}", p) for i, p in enumerate(percents)])
    counts = Counter(split.pick() for _ in range(100 * windows))
    expected = {f"r{i}": p * windows for i, p in enumerate(percents) if p > 0}
    assert counts == expected


def test_a_revision_at_zero_percent_never_gets_split_traffic() -> None:
    table = RouteTable()
    table.set_route(
        route(
            "iris",
            "default",
            TrafficTarget("iris-1", 100),
            TrafficTarget("iris-2", 0, tag="canary"),
        )
    )
    assert picks(table, "iris.default.localhost", 300) == {"iris-1": 300}


def test_two_targets_naming_the_same_revision_add_up() -> None:
    split = WeightedRoundRobin([("a", 30), ("b", 40), ("a", 30)])
    assert Counter(split.pick() for _ in range(100)) == {"a": 60, "b": 40}


def test_no_positive_weight_picks_nothing() -> None:
    assert WeightedRoundRobin([("a", 0)]).pick() is None
    assert WeightedRoundRobin([]).pick() is None


def test_replacing_a_route_applies_the_new_percents() -> None:
    table = RouteTable()
    table.set_route(route("s", "ns", TrafficTarget("s-1", 100)))
    table.set_route(route("s", "ns", TrafficTarget("s-1", 50), TrafficTarget("s-2", 50)))
    assert picks(table, "s.ns.localhost", 100) == {"s-1": 50, "s-2": 50}


# -- tags ------------------------------------------------------------------------------------------
@pytest.fixture
def tagged() -> RouteTable:
    table = RouteTable()
    table.set_route(
        route(
            "iris",
            "default",
            TrafficTarget("iris-1", 100, tag="current"),
            TrafficTarget("iris-2", 0, tag="canary"),
        )
    )
    return table


def test_a_tag_host_reaches_its_revision_even_at_zero_percent(tagged: RouteTable) -> None:
    assert tagged.resolve("canary-iris.default.localhost") == Destination(
        "default", "iris-2", "canary"
    )
    assert tagged.resolve("current-iris.default.localhost") == Destination(
        "default", "iris-1", "current"
    )


def test_the_tag_header_selects_the_tagged_revision(tagged: RouteTable) -> None:
    assert picks(tagged, "iris.default.localhost", 50, tag="canary") == {"iris-2": 50}


def test_an_unknown_tag_header_falls_back_to_the_split(tagged: RouteTable) -> None:
    assert picks(tagged, "iris.default.localhost", 50, tag="nosuch") == {"iris-1": 50}


def test_a_tag_host_wins_over_the_tag_header(tagged: RouteTable) -> None:
    assert tagged.resolve("current-iris.default.localhost", "canary") == Destination(
        "default", "iris-1", "current"
    )


def test_removing_a_tag_removes_its_host(tagged: RouteTable) -> None:
    tagged.set_route(route("iris", "default", TrafficTarget("iris-1", 100)))
    assert tagged.resolve("canary-iris.default.localhost") is None


def test_a_route_name_wins_over_another_routes_tag_host_in_either_order() -> None:
    for order in ([0, 1], [1, 0]):
        table = RouteTable()
        routes = [
            route("a-b", "ns", TrafficTarget("ab-1", 100)),
            route("b", "ns", TrafficTarget("b-1", 100, tag="a")),
        ]
        for i in order:
            table.set_route(routes[i])
        assert table.resolve("a-b.ns.localhost") == Destination("ns", "ab-1")
        table.remove_route("ns", "a-b")
        assert table.resolve("a-b.ns.localhost") == Destination("ns", "b-1", "a")


# -- hosts -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        pytest.param("iris.default.localhost", "iris.default.localhost", id="plain"),
        pytest.param("iris.default.localhost:8080", "iris.default.localhost", id="port"),
        pytest.param("IRIS.Default.LocalHost", "iris.default.localhost", id="case"),
        pytest.param("iris.default.localhost.", "iris.default.localhost", id="trailing-dot"),
        pytest.param("iris.default.localhost.:80", "iris.default.localhost", id="dot-and-port"),
        pytest.param("[::1]:8080", "[::1]", id="ipv6-port"),
        pytest.param("[::1]", "[::1]", id="ipv6"),
        pytest.param(" iris.default.localhost ", "iris.default.localhost", id="spaces"),
        pytest.param("", "", id="empty"),
    ],
)
def test_normalize_host(raw: str, normal: str) -> None:
    assert normalize_host(raw) == normal


def test_route_hosts_cover_the_domain_the_cluster_local_name_and_tags() -> None:
    spec = route("iris", "ml", TrafficTarget("iris-1", 100), TrafficTarget("iris-2", 0, "canary"))
    assert route_hosts(spec, "example.com") == {
        "iris.ml.example.com": None,
        "canary-iris.ml.example.com": "canary",
        "iris.ml.svc.cluster.local": None,
        "canary-iris.ml.svc.cluster.local": "canary",
    }


def test_a_custom_domain_is_served_and_the_default_one_is_not() -> None:
    table = RouteTable("Example.COM.")
    table.set_route(route("iris", "default"))
    assert table.resolve("iris.default.example.com") == Destination("default", "iris-00001")
    assert table.resolve("iris.default.localhost") is None


def test_namespaces_keep_same_named_routes_apart() -> None:
    table = RouteTable()
    table.set_route(route("iris", "a", TrafficTarget("iris-a", 100)))
    table.set_route(route("iris", "b", TrafficTarget("iris-b", 100)))
    assert table.resolve("iris.a.localhost") == Destination("a", "iris-a")
    assert table.resolve("iris.b.localhost") == Destination("b", "iris-b")
    table.remove_route("a", "iris")
    assert table.resolve("iris.a.localhost") is None
    assert table.resolve("iris.b.localhost") == Destination("b", "iris-b")
    assert [r.namespace for r in table.routes()] == ["b"]


def test_removing_an_unknown_route_is_harmless() -> None:
    RouteTable().remove_route("default", "nosuch")


def test_a_route_without_targets_resolves_to_no_revision() -> None:
    table = RouteTable()
    table.set_route(RouteSpec("default", "empty", ()))
    assert table.resolve("empty.default.localhost") == Destination("default", "")


def test_the_unknown_host_message_lists_the_hosts_that_exist() -> None:
    table = RouteTable()
    table.set_route(route("iris", "default", TrafficTarget("iris-1", 100, tag="v1")))
    message = table.unknown_host_message("nosuch.default.localhost")
    assert "No route serves host 'nosuch.default.localhost'" in message
    assert "{route}.{namespace}.localhost" in message
    assert "iris.default.localhost" in message and "v1-iris.default.localhost" in message
    assert "svc.cluster.local" not in message


def test_the_unknown_host_message_says_how_when_no_route_exists() -> None:
    message = RouteTable().unknown_host_message("")
    assert message.startswith("The request has no Host header; no routes exist yet")
    assert "create a Service" in message


# -- validation ------------------------------------------------------------------------------------
def test_percents_must_sum_to_100() -> None:
    with pytest.raises(ValueError, match="spec.traffic percents sum to 90, they must sum to 100"):
        RouteSpec("default", "iris", (TrafficTarget("a", 60), TrafficTarget("b", 30)))


@pytest.mark.parametrize("percent", [-1, 101])
def test_a_percent_must_be_between_0_and_100(percent: int) -> None:
    with pytest.raises(ValueError, match=r"spec.traffic\[0\].percent is .*between 0 and 100"):
        RouteSpec("default", "iris", (TrafficTarget("a", percent),))
