"""KServe's admission rules for InferenceGraphs (`serving.kserve.io/v1alpha1`), past the schema.

As KServe's validating webhook (`inference_graph_validation.go`), with its messages: the name is
`[a-z]([-a-z0-9]*[a-z0-9])?`; a node named `root` exists; step names are unique within a node;
every step names exactly one of `nodeName`, `serviceName`, `serviceUrl`; a Splitter's steps all
have a `weight` and the weights sum to 100. Past KServe's webhook (whose router would fail at
request time instead), a `nodeName` must name a node of the graph, and the graph's
`knserve.dev/async-broker` annotation must name a broker and have a Sequence root
(`knative.router.chain`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from knserve.knative.apiserver.naming import is_dns1123_label

__all__ = ["ASYNC_BROKER", "inference_graph_errors"]

GRAPH_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
ROOT = "root"
# knserve's async chains (knative/router/chain.py): the broker the root Sequence's steps hand
# their output to instead of waiting for the next step.
ASYNC_BROKER = "knserve.dev/async-broker"


def inference_graph_errors(obj: dict[str, Any]) -> list[str]:
    """Every rule the graph breaks, each a message that says what to fix."""
    meta = obj.get("metadata") or {}
    name = meta.get("name") or ""
    if not GRAPH_NAME.fullmatch(name):
        return [
            f'The InferenceGraph "{name}" is invalid: a InferenceGraph name must consist of '
            "lower case alphanumeric characters or '-', and must start with alphabetical "
            f'character. (e.g. "my-name" or "abc-123", regex used for validation is '
            f"'{GRAPH_NAME.pattern}')"
        ]
    nodes: Mapping[str, Any] = (obj.get("spec") or {}).get("nodes") or {}
    if ROOT not in nodes:
        return [
            "root node not found, InferenceGraph needs a node with name 'root' as the root "
            "node of the graph"
        ]
    errors: list[str] = []
    for node_name, node in nodes.items():
        errors += _node_errors(name, node_name, node or {}, nodes)
    errors += _async_errors(meta.get("annotations") or {}, nodes)
    return errors


def _node_errors(
    graph: str, node_name: str, node: Mapping[str, Any], nodes: Mapping[str, Any]
) -> list[str]:
    errors: list[str] = []
    steps = node.get("steps") or []
    seen: set[str] = set()
    for index, step in enumerate(steps):
        step_name = step.get("name") or ""
        if step_name and step_name in seen:
            errors.append(
                f'Node "{node_name}" of InferenceGraph "{graph}" contains more than one step '
                f'with name "{step_name}"'
            )
        seen.add(step_name)
        targets = [k for k in ("nodeName", "serviceName", "serviceUrl") if step.get(k)]
        if not targets:
            errors.append(
                f'Step {index} ("{step_name}") in node "{node_name}" of InferenceGraph "{graph}" '
                "does not specify an inference target"
            )
        elif len(targets) > 1:
            errors.append(
                f'Step {index} ("{step_name}") in node "{node_name}" of InferenceGraph "{graph}" '
                "specifies more than one of nodeName, serviceName, serviceUrl"
            )
        elif step.get("nodeName") and step["nodeName"] not in nodes:
            errors.append(
                f'Step {index} ("{step_name}") in node "{node_name}" of InferenceGraph "{graph}" '
                f"names node {step['nodeName']!r}, which the graph does not have; nodes: "
                f"{', '.join(sorted(nodes))}"
            )
    if node.get("routerType") == "Splitter":
        for step in steps:
            if step.get("weight") is None:
                return [
                    *errors,
                    f"InferenceGraph[{graph}] Node[{node_name}] Route[{step.get('serviceName', '')}]"
                    " missing the 'Weight'",
                ]
        if sum(int(step["weight"]) for step in steps) != 100:
            errors.append(
                f"InferenceGraph[{graph}] Node[{node_name}] splitter node: the sum of traffic "
                "weights for all routing targets should be 100"
            )
    return errors


def _async_errors(annotations: Mapping[str, str], nodes: Mapping[str, Any]) -> list[str]:
    if ASYNC_BROKER not in annotations:
        return []
    errors = []
    if not is_dns1123_label(annotations[ASYNC_BROKER] or ""):
        errors.append(
            f"annotation {ASYNC_BROKER} must name a Broker of the graph's namespace; "
            f"{annotations[ASYNC_BROKER]!r} is not a name"
        )
    root = nodes.get(ROOT) or {}
    if root.get("routerType") != "Sequence":
        errors.append(
            f"annotation {ASYNC_BROKER} makes the root node's steps hand off through the broker, "
            f"so the root node must be a Sequence (it is a {root.get('routerType')})"
        )
    return errors
