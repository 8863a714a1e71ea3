"""`knserve inferencegraph` (aliases `graph`, `ig`): list, describe, delete.

Graphs are created with `knserve apply -f FILE` (KServe's YAML as is). `list` has KServe's
printer columns (NAME, URL, READY, AGE); `describe` shows the URL, the router's Knative Service,
each node with its steps and where each step goes (the URL the router was given for an
InferenceService step), where an async graph's results go, and the conditions.
"""

from __future__ import annotations

import json
from typing import Any

import click

from knserve.knative.apiserver.errors import NotFound
from knserve.knative.apiserver.kinds import named
from knserve.knative.cli.output import (
    OUTPUT,
    age,
    client_options,
    delete_command,
    describe_conditions,
    emit,
    emit_list,
    fields,
    make_client,
    ready_condition,
    reports_api_errors,
    table,
)

GRAPHS = named("inferencegraphs")
SERVICES = named("services")


@click.group("inferencegraph")
def cli() -> None:
    """InferenceGraphs: list, describe, delete (create them with `knserve apply -f`)."""


@cli.command("list")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def list_graphs(namespace: str, api: str | None, output: str | None) -> None:
    """List InferenceGraphs with KServe's columns."""
    items = make_client(api).list(GRAPHS, namespace)
    if emit_list(items, output, namespace, "inferencegraphs"):
        return
    rows = [
        (
            graph["metadata"]["name"],
            (graph.get("status") or {}).get("url", ""),
            ready_condition(graph).get("status", "Unknown"),
            age(graph["metadata"].get("creationTimestamp")),
        )
        for graph in items
    ]
    table(("NAME", "URL", "READY", "AGE"), rows)


def _resolved_urls(router: dict[str, Any] | None) -> dict[tuple[str, int], str]:
    """(node, step index) → the URL the router was given, read from its `--graph-json`."""
    if router is None:
        return {}
    containers = router["spec"]["template"]["spec"].get("containers") or [{}]
    args = containers[0].get("args") or []
    if "--graph-json" not in args or args.index("--graph-json") + 1 >= len(args):
        return {}
    spec = json.loads(args[args.index("--graph-json") + 1])
    return {
        (node, index): step["serviceUrl"]
        for node, router_node in (spec.get("nodes") or {}).items()
        for index, step in enumerate(router_node.get("steps") or [])
        if step.get("serviceUrl")
    }


def _step_line(step: dict[str, Any], index: int, url: str | None) -> str:
    target = (
        f"node {step['nodeName']}"
        if step.get("nodeName")
        else f"isvc {step['serviceName']}"
        if step.get("serviceName")
        else step.get("serviceUrl", "")
    )
    notes = [
        f"{key} {step[key]}"
        for key in ("weight", "condition", "data", "dependency")
        if step.get(key) is not None
    ]
    if step.get("mapPredictionsToInstances"):
        notes.append("predictions→instances")
    name = step.get("name") or str(index)
    line = f"    {name}: {target}" + (f"  ({', '.join(notes)})" if notes else "")
    if url and step.get("serviceName"):
        line += f"\n        → {url}"
    return line


@cli.command("describe")
@click.argument("name")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def describe(name: str, namespace: str, api: str | None, output: str | None) -> None:
    """Show an InferenceGraph: URL, router, nodes and steps, conditions."""
    client = make_client(api)
    graph = client.get(GRAPHS, namespace, name)
    if emit(graph, output):
        return
    try:
        router = client.get(SERVICES, namespace, name)
    except NotFound:  # no router yet: the graph waits on its InferenceServices
        router = None
    status = graph.get("status") or {}
    router_status = (router or {}).get("status") or {}
    fields(
        [
            ("Name", name),
            ("Namespace", namespace),
            ("Age", age(graph["metadata"].get("creationTimestamp"))),
            ("URL", status.get("url")),
            ("Router", router and f"ksvc {name} ({router_status.get('latestReadyRevisionName')})"),
        ]
    )
    annotations = status.get("annotations") or {}
    if annotations.get("knserve.dev/async-broker"):
        click.echo(
            f"Async:      steps hand off through broker {annotations['knserve.dev/async-broker']}; "
            f"results are events of type {annotations.get('knserve.dev/response-type')}"
        )
    urls = _resolved_urls(router)
    click.echo("\nNodes:")
    for node_name, node in ((graph.get("spec") or {}).get("nodes") or {}).items():
        click.echo(f"  {node_name} ({node.get('routerType')})")
        for index, step in enumerate(node.get("steps") or []):
            click.echo(_step_line(step, index, urls.get((node_name, index))))
    click.echo()
    describe_conditions(graph)


delete_command(cli, GRAPHS, "InferenceGraph", "Delete InferenceGraphs (with their routers).")
