"""How KServe's router runs an InferenceGraph's nodes, with the calls to the steps handed in.

`route` evaluates one node of `spec.nodes` (KServe's `routeStep`) for a request body and returns
the answer's body and status; a step is called through `call(step, body)`, which the ASGI app
makes an HTTP POST (and tests may make anything). What a node decides is in plain functions:

- Sequence: steps in order; a step's input is the graph's request, or the previous step's
  response when it says `data: $response` (`step_input`, with `mapPredictionsToInstances`); a
  step with a `condition` runs only if the previous response matches it, else the sequence ends
  there with that response and 200 (`condition_holds`); a `Hard` step that answers non-2xx ends
  the sequence with its answer. The last step's answer is the node's.
- Switch: the first step whose `condition` matches the request (`pick_by_condition`); none is
  404 `None of the routes matched with the switch condition`.
- Splitter: a step drawn by `weight` (`pick_by_weight`, a point in [0, 100)).
- Ensemble: every step at once; their JSON objects merged under each step's `name` (or its
  index); a `Hard` step that answers non-2xx decides the node's answer, the first in step order.

A failure to reach a step, a node that does not exist or an answer that is not what the node
needs is a `RoutingError`: the app answers it with KServe's body
`{"error": "Failed to process request", "cause": …}` and its status (500 unless said otherwise).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple

from knserve.knative.router.gjson import exists

__all__ = [
    "ROOT",
    "Answer",
    "Call",
    "RoutingError",
    "condition_holds",
    "is_successful",
    "pick_by_condition",
    "pick_by_weight",
    "route",
    "step_input",
]

ROOT = "root"  # every graph starts at the node named root (KServe's GraphRootNodeName)
Step = Mapping[str, Any]


class Answer(NamedTuple):
    body: bytes
    status: int


Call = Callable[[Step, bytes], Awaitable[Answer]]
Draw = Callable[[], int]


class RoutingError(Exception):
    """The graph cannot answer: `cause` is KServe's error text, `status` the HTTP status."""

    def __init__(self, cause: str, status: int = 500) -> None:
        super().__init__(cause)
        self.cause = cause
        self.status = status


def is_successful(status: int) -> bool:
    return 200 <= status <= 299


def _parse(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return _INVALID


_INVALID = object()


def pick_by_weight(steps: Sequence[Step], point: int) -> Step | None:
    """The step whose cumulative weight first exceeds `point` (0-99), as KServe's pickupRoute."""
    end = 0
    for step in steps:
        end += int(step.get("weight") or 0)
        if point < end:
            return step
    return None


def pick_by_condition(body: bytes, steps: Sequence[Step]) -> Step | None:
    """The first step whose `condition` selects something in the request (None for a body that
    is not JSON), as KServe's pickupRouteByCondition."""
    document = _parse(body)
    if document is _INVALID:
        return None
    return next((s for s in steps if exists(document, s.get("condition") or "")), None)


def condition_holds(step: Step, previous: bytes | None) -> bool:
    """Whether a Sequence step with a `condition` runs: the previous response must select
    something. A previous response that is not JSON (or none, on the first step) is an error."""
    document = _parse(previous or b"")
    if document is _INVALID:
        raise RoutingError("invalid response")
    return exists(document, step["condition"])


def step_input(step: Step, index: int, request: bytes, response: bytes | None) -> bytes:
    """A Sequence step's request body: the graph's request, or (`data: $response`, not the first
    step) the previous response; `mapPredictionsToInstances` then moves a non-empty
    `predictions` list to `instances`, keeping only those two fields as KServe's struct does."""
    body = request
    if step.get("data") == "$response" and index > 0 and response is not None:
        body = response
    if not step.get("mapPredictionsToInstances"):
        return body
    decoded = _parse(body)
    if not isinstance(decoded, dict):
        return body
    predictions, instances = decoded.get("predictions"), decoded.get("instances")
    valid = all(v is None or isinstance(v, list) for v in (predictions, instances))
    if not valid or not predictions:
        return body
    return json.dumps({"instances": predictions}, separators=(",", ":")).encode()


async def route(
    nodes: Mapping[str, Mapping[str, Any]],
    name: str,
    body: bytes,
    call: Call,
    draw: Draw,
) -> Answer:
    """The answer of node `name` to `body` (see the module docstring). `draw()` gives the
    Splitter's point in [0, 100)."""
    node = nodes.get(name) or {}
    kind = node.get("routerType") or ""
    steps: Sequence[Step] = node.get("steps") or []

    async def execute(step: Step, data: bytes) -> Answer:
        if step.get("nodeName"):
            return await route(nodes, step["nodeName"], data, call, draw)
        return await call(step, data)

    if kind == "Splitter":
        chosen = pick_by_weight(steps, draw())
        if chosen is None:
            raise RoutingError("no route was selected by the splitter")
        return await execute(chosen, body)
    if kind == "Switch":
        chosen = pick_by_condition(body, steps)
        if chosen is None:
            raise RoutingError("None of the routes matched with the switch condition", 404)
        return await execute(chosen, body)
    if kind == "Ensemble":
        return await _ensemble(steps, body, execute)
    if kind == "Sequence":
        return await _sequence(steps, body, execute)
    raise RoutingError(f"invalid route type: {kind}")


async def _sequence(
    steps: Sequence[Step], request: bytes, execute: Callable[[Step, bytes], Awaitable[Answer]]
) -> Answer:
    response: bytes | None = None
    status = 200
    for index, step in enumerate(steps):
        data = step_input(step, index, request, response)
        if step.get("condition") and not condition_holds(step, response):
            return Answer(response or b"", 200)
        response, status = await execute(step, data)
        if step.get("dependency") == "Hard" and not is_successful(status):
            return Answer(response, status)
    return Answer(response or b"", status)


async def _ensemble(
    steps: Sequence[Step], request: bytes, execute: Callable[[Step, bytes], Awaitable[Answer]]
) -> Answer:
    answers = await asyncio.gather(
        *(execute(step, request) for step in steps), return_exceptions=True
    )
    merged: dict[str, Any] = {}
    for index, (step, answer) in enumerate(zip(steps, answers, strict=True)):
        if isinstance(answer, BaseException):
            if isinstance(answer, RoutingError):
                raise answer
            raise RoutingError(str(answer)) from answer
        decoded = _parse(answer.body)
        if not isinstance(decoded, dict):
            raise RoutingError(
                f"the answer of step {step.get('name') or index} is not a JSON object"
            )
        if step.get("dependency") == "Hard" and not is_successful(answer.status):
            return Answer(_compact(decoded), answer.status)
        merged[step.get("name") or str(index)] = decoded
    return Answer(_compact(merged), 200)


def _compact(value: Any) -> bytes:
    # Go's json.Marshal: no spaces, map keys sorted
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
