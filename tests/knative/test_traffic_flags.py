"""kn's --traffic/--tag/--untag rules on spec.traffic (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from knserve.knative.cli.traffic_flags import TrafficFlagError, edit_traffic

LATEST_100 = [{"latestRevision": True, "percent": 100}]


@pytest.mark.parametrize(
    ("current", "traffic", "tags", "untags", "expected"),
    [
        (None, [], [], [], LATEST_100),
        (
            None,
            ["a-1=80,@latest=20"],
            [],
            [],
            [{"latestRevision": True, "percent": 20}, {"revisionName": "a-1", "percent": 80}],
        ),
        (
            None,
            ["a-1=80", "@latest=20"],
            [],
            [],
            [{"latestRevision": True, "percent": 20}, {"revisionName": "a-1", "percent": 80}],
        ),
        (
            None,
            ["a-1=100"],
            ["a-2=canary"],
            [],
            [
                {"revisionName": "a-2", "percent": 0, "tag": "canary"},
                {"revisionName": "a-1", "percent": 100},
            ],
        ),
        (
            None,
            [],
            ["@latest=current"],
            [],
            [{"latestRevision": True, "percent": 100, "tag": "current"}],
        ),
        (
            [{"revisionName": "a-1", "percent": 100, "tag": "old"}],
            [],
            ["a-1=stable"],
            [],
            [
                {"revisionName": "a-1", "percent": 100, "tag": "old"},
                {"revisionName": "a-1", "percent": 0, "tag": "stable"},
            ],
        ),
        (
            [
                {"revisionName": "a-1", "percent": 100},
                {"revisionName": "a-2", "percent": 0, "tag": "canary"},
            ],
            ["canary=100"],
            [],
            [],
            [{"revisionName": "a-2", "percent": 100, "tag": "canary"}],
        ),
        (
            [
                {"revisionName": "a-1", "percent": 100},
                {"revisionName": "a-2", "percent": 0, "tag": "canary"},
            ],
            ["a-2=100"],
            [],
            ["canary"],
            [{"revisionName": "a-2", "percent": 100}],
        ),
        (
            [
                {"revisionName": "a-1", "percent": 50, "tag": "x"},
                {"latestRevision": True, "percent": 50},
            ],
            [],
            [],
            ["x"],
            [{"revisionName": "a-1", "percent": 50}, {"latestRevision": True, "percent": 50}],
        ),
        (
            [{"revisionName": "a-1", "latestRevision": False, "percent": 100, "url": "http://x"}],
            [],
            [],
            [],
            [{"revisionName": "a-1", "percent": 100}],
        ),
    ],
)
def test_flags_edit_the_traffic_block_as_kn_does(
    current: list[dict[str, Any]] | None,
    traffic: list[str],
    tags: list[str],
    untags: list[str],
    expected: list[dict[str, Any]],
) -> None:
    assert edit_traffic(current, traffic, tags, untags) == expected


def test_the_current_block_is_not_changed_in_place() -> None:
    current = [{"revisionName": "a-1", "percent": 100, "tag": "t"}]
    edit_traffic(current, ["@latest=100"], [], ["t"])
    assert current == [{"revisionName": "a-1", "percent": 100, "tag": "t"}]


@pytest.mark.parametrize(
    ("traffic", "tags", "untags", "message"),
    [
        (["a-1"], [], [], "--traffic 'a-1': write it as REVISION=PERCENT"),
        (["a-1=lots"], [], [], "--traffic a-1=lots: the percent must be a whole number"),
        (["a-1=120"], [], [], "--traffic a-1=120: the percent must be 0 to 100"),
        ([], ["a-1"], [], "--tag 'a-1': write it as REVISION=TAG or @latest=TAG"),
        ([], [], ["nope"], "--untag nope: no traffic target has that tag (tags: none)"),
        ([], ["a-1=x", "a-2=x"], [], "--tag a-2=x: the tag 'x' is in use; --untag it first"),
    ],
)
def test_malformed_flags_say_the_right_shape(
    traffic: list[str], tags: list[str], untags: list[str], message: str
) -> None:
    with pytest.raises(TrafficFlagError) as error:
        edit_traffic(None, traffic, tags, untags)
    assert str(error.value).startswith(message)
