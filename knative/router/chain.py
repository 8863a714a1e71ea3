"""Async chains: the root Sequence's steps hand their output to a broker instead of waiting.

knserve's extension of KServe's graph, expressed as an annotation so the object stays valid
against KServe's schema (a cluster's KServe ignores it and runs the graph synchronously):

    metadata:
      annotations:
        knserve.dev/async-broker: default     # a Broker in the graph's namespace

With it, the root node (a Sequence) runs one step per broker delivery:

1. a request to the graph is accepted at once: the router publishes a `step` event (below) for
   step 0 into the broker (`K_SINK`, the Broker's address, set by the controller) and answers
   `202 Accepted` with where the result will go: `{"id", "broker", "type", "source"}`;
2. the controller made one Trigger per step (`{graph}-step-{i}`), filtering
   `type: dev.knserve.inferencegraph.step`, `knservegraph: {graph}`, `knservestep: {i}` and
   subscribing the router; the router runs that one step (KServe's step semantics: `data`,
   `mapPredictionsToInstances`, `condition`, `dependency`, a `nodeName` step runs its node) and
   answers the delivery with a reply event: the `step` event of step i+1, or, after the last
   step (or a condition that ends the sequence, or a Hard step's failure), the `response`
   event. The broker puts the reply back in, so no connection is held across the pipeline, and
   each hop gets the Trigger's retries and dead-letter sink: a step that cannot be reached
   answers the delivery 502, which the broker retries;
3. whoever wants results subscribes a Trigger to `type: dev.knserve.inferencegraph.response`
   (and `knservegraph`, `knservechain` to pick one graph or one request).

Every event of one request carries `knservechain` (the id of the 202 answer). A `step` event's
data is `{"request": <the graph's request>, "response": <the previous step's answer>}`; the
`response` event's data is the final answer, with `knservestatus` its HTTP status. Event ids are
`{chain}-{step}` and `{chain}-response`, so a redelivered hop produces the same ids.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from knserve.knative.router.nodes import Answer, RoutingError

__all__ = [
    "CHAIN",
    "GRAPH",
    "RESPONSE_TYPE",
    "STATUS",
    "STEP",
    "STEP_TYPE",
    "StepEvent",
    "decode_step",
    "first_event",
    "next_event",
    "response_event",
    "source_of",
]

STEP_TYPE = "dev.knserve.inferencegraph.step"
RESPONSE_TYPE = "dev.knserve.inferencegraph.response"
GRAPH, STEP, CHAIN, STATUS = "knservegraph", "knservestep", "knservechain", "knservestatus"


def source_of(namespace: str, graph: str) -> str:
    """The `source` of a graph's events: its API path, as Knative sources name themselves."""
    return f"/apis/serving.kserve.io/v1alpha1/namespaces/{namespace}/inferencegraphs/{graph}"


class StepEvent(dict[str, Any]):
    """A CloudEvent as attributes plus `data` (a JSON value), in structured form."""


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body.decode("utf-8", "replace")  # a model's text answer travels as a string


def _event(
    namespace: str, graph: str, chain: str, kind: str, suffix: str, data: Any, **extensions: str
) -> StepEvent:
    return StepEvent(
        specversion="1.0",
        id=f"{chain}-{suffix}",
        source=source_of(namespace, graph),
        type=kind,
        datacontenttype="application/json",
        data=data,
        **{GRAPH: graph, CHAIN: chain},
        **extensions,
    )


def first_event(namespace: str, graph: str, request: bytes) -> StepEvent:
    """The event that starts a chain for `request` (a fresh chain id)."""
    chain = uuid.uuid4().hex
    data = {"request": _json(request), "response": None}
    return _event(namespace, graph, chain, STEP_TYPE, "0", data, **{STEP: "0"})


def decode_step(event: Mapping[str, Any]) -> tuple[int, str, bytes, bytes | None]:
    """(step index, chain id, the graph's request, the previous answer) of a `step` event."""
    try:
        index = int(event[STEP])
        chain = str(event[CHAIN])
        data = event.get("data") or {}
        request = json.dumps(data["request"]).encode()
        previous = data.get("response")
    except (KeyError, TypeError, ValueError) as exc:
        raise RoutingError(f"not a step event of this graph: {exc}", 400) from None
    return index, chain, request, None if previous is None else json.dumps(previous).encode()


def next_event(
    namespace: str, graph: str, chain: str, index: int, request: bytes, answer: Answer
) -> StepEvent:
    """The `step` event that hands step `index`'s answer to step `index + 1`."""
    data = {"request": _json(request), "response": _json(answer.body)}
    following = str(index + 1)
    return _event(namespace, graph, chain, STEP_TYPE, following, data, **{STEP: following})


def response_event(namespace: str, graph: str, chain: str, answer: Answer) -> StepEvent:
    """The chain's result: the final answer and its status."""
    return _event(
        namespace,
        graph,
        chain,
        RESPONSE_TYPE,
        "response",
        _json(answer.body),
        **{STATUS: str(answer.status)},
    )
