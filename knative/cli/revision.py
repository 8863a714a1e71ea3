"""`knserve revision list|describe|delete`."""

from __future__ import annotations

from typing import Any

import click

from knserve.knative.apiserver.kinds import named
from knserve.knative.cli.output import (
    OUTPUT,
    age,
    client_options,
    describe_conditions,
    emit,
    emit_list,
    fields,
    make_client,
    reports_api_errors,
    summary,
    table,
)

REVISIONS, SERVICES = named("revisions"), named("services")
SERVICE_LABEL = "serving.knative.dev/service"


def _traffic(client: Any, namespace: str) -> dict[str, tuple[int, list[str]]]:
    """revision name → (percent, tags) from every Service's status in the namespace."""
    out: dict[str, tuple[int, list[str]]] = {}
    for svc in client.list(SERVICES, namespace):
        for target in (svc.get("status") or {}).get("traffic") or []:
            percent, tags = out.get(target["revisionName"], (0, []))
            out[target["revisionName"]] = (
                percent + int(target.get("percent", 0)),
                tags + ([target["tag"]] if target.get("tag") else []),
            )
    return out


def replicas_text(status: dict[str, Any]) -> str:
    """`ready/desired (panic: no)`, as the autoscaler last decided."""
    text = f"{status.get('actualReplicas', 0)}/{status.get('desiredReplicas', 0)}"
    panic = (status.get("annotations") or {}).get("autoscaling.knative.dev/panic")
    return text + (f" (panic: {'yes' if panic == 'true' else 'no'})" if panic else "")


def _routing(percent: int, tags: list[str]) -> str:
    return f"{percent}%" + (f", tags {', '.join(tags)}" if tags else "")


@click.group("revision")
def cli() -> None:
    """Revisions: list, describe, delete."""


@cli.command("list")
@click.option("-s", "--service", help="only this service's revisions")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def list_revisions(
    service: str | None, namespace: str, api: str | None, output: str | None
) -> None:
    """List revisions, newest first, with their traffic and tags."""
    client = make_client(api)
    items = client.list(REVISIONS, namespace, f"{SERVICE_LABEL}={service}" if service else None)
    if emit_list(items, output, namespace, "revisions"):
        return
    traffic = _traffic(client, namespace)
    items.sort(
        key=lambda r: (
            r["metadata"].get("labels", {}).get(SERVICE_LABEL, ""),
            r["metadata"].get("creationTimestamp", ""),
        ),
        reverse=True,
    )
    rows = []
    for rev in items:
        labels = rev["metadata"].get("labels", {})
        percent, tags = traffic.get(rev["metadata"]["name"], (0, []))
        rows.append(
            (
                rev["metadata"]["name"],
                labels.get(SERVICE_LABEL, ""),
                f"{percent}%" if percent else "",
                ",".join(tags),
                labels.get("serving.knative.dev/configurationGeneration", ""),
                age(rev["metadata"].get("creationTimestamp")),
                *summary(rev),
            )
        )
    table(
        (
            "NAME",
            "SERVICE",
            "TRAFFIC",
            "TAGS",
            "GENERATION",
            "AGE",
            "CONDITIONS",
            "READY",
            "REASON",
        ),
        rows,
    )


@cli.command("describe")
@click.argument("name")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def describe(name: str, namespace: str, api: str | None, output: str | None) -> None:
    """Show a revision: image, environment, scale, replicas, traffic, conditions."""
    client = make_client(api)
    rev = client.get(REVISIONS, namespace, name)
    if emit(rev, output):
        return
    container = (rev["spec"].get("containers") or [{}])[0]
    annotations = rev["metadata"].get("annotations") or {}
    status = rev.get("status") or {}
    percent, tags = _traffic(client, namespace).get(name, (0, []))
    scale = "-".join(
        annotations.get(f"autoscaling.knative.dev/{k}", d)
        for k, d in (("min-scale", "0"), ("max-scale", "∞"))
    )
    fields(
        [
            ("Name", name),
            ("Namespace", namespace),
            ("Age", age(rev["metadata"].get("creationTimestamp"))),
            ("Service", rev["metadata"].get("labels", {}).get(SERVICE_LABEL)),
            ("Image", container.get("image")),
            ("Command", " ".join(container.get("command") or [])),
            ("Args", " ".join(container.get("args") or [])),
            (
                "Env",
                ", ".join(f"{e['name']}={e.get('value', '…')}" for e in container.get("env") or []),
            ),
            ("Scale", scale),
            ("Concurrency", f"limit {rev['spec'].get('containerConcurrency', 0)}"),
            ("Timeout", f"{rev['spec'].get('timeoutSeconds', 300)}s"),
            ("Replicas", replicas_text(status)),
            ("Traffic", f"{percent}%"),
            ("Tags", ", ".join(tags)),
        ]
    )
    click.echo()
    describe_conditions(rev)


@cli.command("delete")
@click.argument("names", nargs=-1, required=True)
@client_options
@reports_api_errors
def delete(names: tuple[str, ...], namespace: str, api: str | None) -> None:
    """Delete revisions that receive no traffic."""
    client = make_client(api)
    traffic = _traffic(client, namespace)
    for name in names:
        if name in traffic:
            raise click.ClickException(
                f"revision '{name}' is routed ({_routing(*traffic[name])}); "
                "move its traffic and tags away first (knserve service update --traffic/--untag)"
            )
        client.delete(REVISIONS, namespace, name)
        click.echo(f"Revision '{name}' deleted in namespace '{namespace}'.")
