"""What an async graph (`knserve.dev/async-broker`, see `knative.router.chain`) needs around
its router: one Trigger per root step, the broker's address in the router's environment, and
status annotations that say where results go. Pure functions of plain dicts, for both targets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from knserve.knative.apiserver.graph_validation import ASYNC_BROKER
from knserve.knative.kserve.graph import GRAPH_LABEL, graph_owner
from knserve.knative.router.chain import CHAIN, GRAPH, RESPONSE_TYPE, STEP, STEP_TYPE, source_of

__all__ = [
    "GRAPH_ENV",
    "SINK_ENV",
    "async_broker",
    "chain_env",
    "chain_status_annotations",
    "chain_triggers",
]

SINK_ENV = "K_SINK"  # Knative's name for "where to send events", as SinkBinding sets it
GRAPH_ENV = "KNSERVE_GRAPH"  # {namespace}/{name}: the router names its events' source with it


def async_broker(graph: Mapping[str, Any]) -> str | None:
    """The broker an async graph hands its steps to, or None for a synchronous graph."""
    return ((graph.get("metadata") or {}).get("annotations") or {}).get(ASYNC_BROKER) or None


def chain_triggers(graph: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One Trigger per step of the root Sequence, delivering that step's event to the router."""
    broker = async_broker(graph)
    if broker is None:
        return []
    meta = graph["metadata"]
    name, namespace = meta["name"], meta.get("namespace") or "default"
    steps = ((graph.get("spec") or {}).get("nodes") or {}).get("root", {}).get("steps") or []
    return [
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {
                "name": f"{name}-step-{index}",
                "namespace": namespace,
                "labels": {GRAPH_LABEL: name},
                "ownerReferences": [graph_owner(graph)],
            },
            "spec": {
                "broker": broker,
                "filter": {"attributes": {"type": STEP_TYPE, GRAPH: name, STEP: str(index)}},
                "subscriber": {
                    "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": name}
                },
            },
        }
        for index in range(len(steps))
    ]


def chain_env(graph: Mapping[str, Any], broker_url: str) -> list[dict[str, str]]:
    """The router's environment for an async graph: the broker's address and the graph's name."""
    meta = graph["metadata"]
    return [
        {"name": SINK_ENV, "value": broker_url},
        {"name": GRAPH_ENV, "value": f"{meta.get('namespace') or 'default'}/{meta['name']}"},
    ]


def chain_status_annotations(graph: Mapping[str, Any]) -> dict[str, str] | None:
    """Where an async graph's results go, for its status: the broker, and the type, source and
    extension a Trigger filters on."""
    broker = async_broker(graph)
    if broker is None:
        return None
    meta = graph["metadata"]
    return {
        ASYNC_BROKER: broker,
        "knserve.dev/response-type": RESPONSE_TYPE,
        "knserve.dev/response-source": source_of(meta.get("namespace") or "default", meta["name"]),
        "knserve.dev/correlation-extension": CHAIN,
    }
