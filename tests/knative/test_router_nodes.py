"""KServe's node semantics (cmd/router routeStep) on plain data: each step's "service" is a
function of the body it is sent, and the calls are recorded, so every rule is checked on what
was sent where and what came back. The same graphs run over real HTTP in test_router_app.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from knserve.knative.router.nodes import (
    Answer,
    RoutingError,
    condition_holds,
    pick_by_condition,
    pick_by_weight,
    route,
    step_input,
)

Service = Callable[[Any], tuple[Any, int]]


class Services:
    """Step URLs → functions of the decoded body; every call recorded as (url, body)."""

    def __init__(self, **services: Service) -> None:
        self.services = services
        self.calls: list[tuple[str, Any]] = []

    async def __call__(self, step: Mapping[str, Any], body: bytes) -> Answer:
        url = step["serviceUrl"]
        decoded = json.loads(body)
        self.calls.append((url, decoded))
        if url not in self.services:
            raise RoutingError(f'Post "{url}": connection refused')
        answer, status = self.services[url](decoded)
        raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        return Answer(raw, status)


def ok(answer: Any) -> Service:
    return lambda _body: (answer, 200)


def echo_with(**extra: Any) -> Service:
    return lambda body: ({**body, **extra}, 200)


async def run(nodes: dict[str, Any], body: Any, services: Services, point: int = 0) -> Answer:
    return await route(nodes, "root", json.dumps(body).encode(), services, lambda: point)


def decoded(answer: Answer) -> Any:
    return json.loads(answer.body)


# ---- Sequence ---------------------------------------------------------------------------------


async def test_sequence_passes_the_request_unless_data_says_response() -> None:
    services = Services(a=echo_with(a=1), b=echo_with(b=2), c=echo_with(c=3))
    nodes = {
        "root": {
            "routerType": "Sequence",
            "steps": [
                {"serviceUrl": "a"},
                {"serviceUrl": "b", "data": "$response"},
                {"serviceUrl": "c", "data": "$request"},
            ],
        }
    }
    answer = await run(nodes, {"x": 0}, services)
    assert services.calls == [("a", {"x": 0}), ("b", {"x": 0, "a": 1}), ("c", {"x": 0})]
    assert decoded(answer) == {"x": 0, "c": 3} and answer.status == 200


async def test_sequence_maps_predictions_to_instances() -> None:
    services = Services(a=ok({"predictions": [1, 2], "model": "a"}), b=echo_with())
    nodes = {
        "root": {
            "routerType": "Sequence",
            "steps": [
                {"serviceUrl": "a"},
                {"serviceUrl": "b", "data": "$response", "mapPredictionsToInstances": True},
            ],
        }
    }
    await run(nodes, {"instances": [[1]]}, services)
    assert services.calls[1] == ("b", {"instances": [1, 2]})  # only the two fields survive


@pytest.mark.parametrize(
    "previous",
    [b'{"predictions": []}', b'{"predictions": 3}', b"not json", b'{"other": 1}'],
)
def test_mapping_leaves_the_body_alone_without_a_predictions_list(previous: bytes) -> None:
    step = {"data": "$response", "mapPredictionsToInstances": True}
    assert step_input(step, 1, b"{}", previous) == previous


def test_the_first_step_always_gets_the_request() -> None:
    assert step_input({"data": "$response"}, 0, b"request", None) == b"request"


async def test_a_failed_hard_step_ends_the_sequence_with_its_answer() -> None:
    services = Services(a=lambda _b: ({"error": "boom"}, 503), b=ok({"never": True}))
    nodes = {
        "root": {
            "routerType": "Sequence",
            "steps": [{"serviceUrl": "a", "dependency": "Hard"}, {"serviceUrl": "b"}],
        }
    }
    answer = await run(nodes, {}, services)
    assert (decoded(answer), answer.status) == ({"error": "boom"}, 503)
    assert [url for url, _ in services.calls] == ["a"]


async def test_a_failed_soft_step_lets_the_sequence_go_on() -> None:
    services = Services(a=lambda _b: ({"error": "boom"}, 500), b=ok({"fine": True}))
    nodes = {
        "root": {"routerType": "Sequence", "steps": [{"serviceUrl": "a"}, {"serviceUrl": "b"}]}
    }
    answer = await run(nodes, {}, services)
    assert (decoded(answer), answer.status) == ({"fine": True}, 200)


async def test_a_sequence_returns_the_last_status_even_if_soft_failed() -> None:
    services = Services(a=ok({}), b=lambda _b: ({"error": "late"}, 500))
    nodes = {
        "root": {"routerType": "Sequence", "steps": [{"serviceUrl": "a"}, {"serviceUrl": "b"}]}
    }
    answer = await run(nodes, {}, services)
    assert answer.status == 500


async def test_an_unmet_condition_ends_the_sequence_with_the_previous_answer_and_200() -> None:
    services = Services(a=lambda _b: ({"predictions": [{"label": "cat"}]}, 201), b=ok({}))
    nodes = {
        "root": {
            "routerType": "Sequence",
            "steps": [
                {"serviceUrl": "a"},
                {"serviceUrl": "b", "condition": 'predictions.#(label=="dog")'},
            ],
        }
    }
    answer = await run(nodes, {}, services)
    assert (decoded(answer), answer.status) == ({"predictions": [{"label": "cat"}]}, 200)
    assert [url for url, _ in services.calls] == ["a"]


async def test_a_met_condition_runs_the_step() -> None:
    services = Services(a=ok({"predictions": [{"label": "dog"}]}), b=ok({"barked": True}))
    nodes = {
        "root": {
            "routerType": "Sequence",
            "steps": [
                {"serviceUrl": "a"},
                {"serviceUrl": "b", "condition": 'predictions.#(label=="dog")'},
            ],
        }
    }
    assert decoded(await run(nodes, {}, services)) == {"barked": True}


def test_a_condition_on_the_first_step_has_no_response_to_read() -> None:
    with pytest.raises(RoutingError) as raised:
        condition_holds({"condition": "x"}, None)
    assert (raised.value.cause, raised.value.status) == ("invalid response", 500)


# ---- Switch -----------------------------------------------------------------------------------

SWITCH = {
    "root": {
        "routerType": "Switch",
        "steps": [
            {"serviceUrl": "one", "condition": "[@this].#(source==client)"},
            {"serviceUrl": "two", "condition": "instances.#(intval>10)"},
            {"serviceUrl": "three", "condition": "instances.#(strval%*red-server*)"},
        ],
    }
}


async def test_switch_takes_the_first_matching_step() -> None:
    services = Services(one=ok("1"), two=ok("2"), three=ok("3"))
    body = {"source": "client", "instances": [{"intval": 11, "strval": "red-server"}]}
    assert decoded(await run(SWITCH, body, services)) == "1"
    body = {"source": "client1", "instances": [{"intval": 11, "strval": "red-server"}]}
    assert decoded(await run(SWITCH, body, services)) == "2"
    body = {"source": "client1", "instances": [{"intval": 1, "strval": "1red-server1"}]}
    assert decoded(await run(SWITCH, body, services)) == "3"


async def test_switch_without_a_match_is_404() -> None:
    with pytest.raises(RoutingError) as raised:
        await run(SWITCH, {"source": "nobody"}, Services())
    assert raised.value.status == 404
    assert raised.value.cause == "None of the routes matched with the switch condition"


def test_switch_on_a_body_that_is_not_json_matches_nothing() -> None:
    assert pick_by_condition(b"{nope", SWITCH["root"]["steps"]) is None


async def test_switch_returns_the_steps_status_whatever_its_dependency() -> None:
    services = Services(one=lambda _b: ({"e": 1}, 502))
    nodes = {
        "root": {
            "routerType": "Switch",
            "steps": [{"serviceUrl": "one", "condition": "a", "dependency": "Hard"}],
        }
    }
    answer = await run(nodes, {"a": 1}, services)
    assert answer.status == 502


# ---- Splitter ---------------------------------------------------------------------------------


def test_splitter_draws_by_cumulative_weight() -> None:
    steps = [{"serviceUrl": "a", "weight": 20}, {"serviceUrl": "b", "weight": 80}]
    picked = [pick_by_weight(steps, point)["serviceUrl"] for point in range(100)]  # type: ignore[index]
    assert picked.count("a") == 20 and picked.count("b") == 80
    assert picked[19] == "a" and picked[20] == "b"


async def test_splitter_sends_to_the_drawn_step_and_fails_without_one() -> None:
    services = Services(a=ok("a"), b=ok("b"))
    nodes = {
        "root": {
            "routerType": "Splitter",
            "steps": [{"serviceUrl": "a", "weight": 20}, {"serviceUrl": "b", "weight": 80}],
        }
    }
    assert decoded(await run(nodes, {}, services, point=5)) == "a"
    assert decoded(await run(nodes, {}, services, point=99)) == "b"
    short = {"root": {"routerType": "Splitter", "steps": [{"serviceUrl": "a", "weight": 10}]}}
    with pytest.raises(RoutingError, match="no route was selected by the splitter"):
        await run(short, {}, services, point=50)


# ---- Ensemble ---------------------------------------------------------------------------------


async def test_ensemble_merges_answers_under_step_names_or_indexes() -> None:
    services = Services(a=ok({"predictions": [1]}), b=ok({"predictions": [2]}))
    nodes = {
        "root": {
            "routerType": "Ensemble",
            "steps": [{"serviceUrl": "a", "name": "first"}, {"serviceUrl": "b"}],
        }
    }
    answer = await run(nodes, {"instances": [[0]]}, services)
    assert decoded(answer) == {"first": {"predictions": [1]}, "1": {"predictions": [2]}}
    assert answer.status == 200
    assert sorted(url for url, _ in services.calls) == ["a", "b"]


async def test_ensemble_a_failed_hard_step_decides_the_answer() -> None:
    services = Services(a=ok({"fine": 1}), b=lambda _b: ({"error": "down"}, 503))
    nodes = {
        "root": {
            "routerType": "Ensemble",
            "steps": [
                {"serviceUrl": "a", "name": "a"},
                {"serviceUrl": "b", "name": "b", "dependency": "Hard"},
            ],
        }
    }
    answer = await run(nodes, {}, services)
    assert (decoded(answer), answer.status) == ({"error": "down"}, 503)


async def test_ensemble_keeps_a_failed_soft_steps_answer() -> None:
    services = Services(a=ok({"fine": 1}), b=lambda _b: ({"error": "down"}, 503))
    nodes = {
        "root": {
            "routerType": "Ensemble",
            "steps": [{"serviceUrl": "a", "name": "a"}, {"serviceUrl": "b", "name": "b"}],
        }
    }
    answer = await run(nodes, {}, services)
    assert (decoded(answer), answer.status) == ({"a": {"fine": 1}, "b": {"error": "down"}}, 200)


async def test_ensemble_needs_json_objects_and_reachable_steps() -> None:
    nodes = {
        "root": {
            "routerType": "Ensemble",
            "steps": [{"serviceUrl": "a", "name": "a"}, {"serviceUrl": "b", "name": "b"}],
        }
    }
    with pytest.raises(RoutingError, match="step b is not a JSON object"):
        await run(nodes, {}, Services(a=ok({}), b=ok([1, 2])))
    with pytest.raises(RoutingError, match='Post "b": connection refused'):
        await run(nodes, {}, Services(a=ok({})))


# ---- nodes of nodes, and what is not a node ---------------------------------------------------


async def test_steps_run_other_nodes() -> None:
    services = Services(a=echo_with(a=1), b=ok({"predictions": [7]}), c=ok({"predictions": [8]}))
    nodes = {
        "root": {
            "routerType": "Sequence",
            "steps": [{"serviceUrl": "a"}, {"nodeName": "vote", "data": "$response"}],
        },
        "vote": {
            "routerType": "Ensemble",
            "steps": [{"serviceUrl": "b", "name": "b"}, {"serviceUrl": "c", "name": "c"}],
        },
    }
    answer = await run(nodes, {"x": 1}, services)
    assert decoded(answer) == {"b": {"predictions": [7]}, "c": {"predictions": [8]}}
    assert ("b", {"x": 1, "a": 1}) in services.calls


async def test_an_unknown_node_or_router_type_is_a_500() -> None:
    with pytest.raises(RoutingError) as raised:
        await run({}, {}, Services())
    assert (raised.value.cause, raised.value.status) == ("invalid route type: ", 500)
    with pytest.raises(RoutingError, match="invalid route type: Loop"):
        await run({"root": {"routerType": "Loop"}}, {}, Services())
