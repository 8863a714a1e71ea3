"""`knserve broker create|list|describe|delete`, with kn's flags."""

from __future__ import annotations

from typing import Any

import click

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
    reports_api_errors,
    summary,
    table,
)
from knserve.knative.cli.trigger import apply_delivery_flags, delivery_options, describe_delivery

BROKERS = named("brokers")
CLASS = "eventing.knative.dev/broker.class"


@click.group("broker")
def cli() -> None:
    """Brokers: create, list, describe, delete."""


@cli.command("create")
@click.argument("name")
@click.option(
    "--class",
    "broker_class",
    help=f"the {CLASS} annotation (the local plane has one broker kind and records it)",
)
@delivery_options
@click.option("-o", "--output", type=OUTPUT, help="print the created object")
@client_options
@reports_api_errors
def create(
    name: str,
    broker_class: str | None,
    namespace: str,
    api: str | None,
    output: str | None,
    **opts: Any,
) -> None:
    """Create a broker: an address that takes CloudEvents and keeps them for its triggers."""
    broker: dict[str, Any] = {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {},
    }
    if broker_class:
        broker["metadata"]["annotations"] = {CLASS: broker_class}
    delivery = apply_delivery_flags(None, opts)
    if delivery:
        broker["spec"]["delivery"] = delivery
    created = make_client(api).create(BROKERS, broker)
    if not emit(created, output):
        click.echo(f"Broker '{name}' successfully created in namespace '{namespace}'.")


@cli.command("list")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def list_brokers(namespace: str, api: str | None, output: str | None) -> None:
    """List brokers with their address and readiness."""
    items = make_client(api).list(BROKERS, namespace)
    if emit_list(items, output, namespace, "brokers"):
        return
    rows = [
        (
            b["metadata"]["name"],
            address(b),
            age(b["metadata"].get("creationTimestamp")),
            *summary(b),
        )
        for b in items
    ]
    table(("NAME", "URL", "AGE", "CONDITIONS", "READY", "REASON"), rows)


@cli.command("describe")
@click.argument("name")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def describe(name: str, namespace: str, api: str | None, output: str | None) -> None:
    """Show a broker: address, delivery, conditions."""
    broker = make_client(api).get(BROKERS, namespace, name)
    if emit(broker, output):
        return
    annotations = broker["metadata"].get("annotations") or {}
    fields(
        [
            ("Name", name),
            ("Namespace", namespace),
            ("Annotations", ", ".join(f"{k}={v}" for k, v in annotations.items())),
            ("Age", age(broker["metadata"].get("creationTimestamp"))),
        ]
    )
    click.echo("Address:")
    click.echo(f"  URL:    {address(broker) or '(none yet: is `knserve up` running?)'}")
    status = broker.get("status") or {}
    describe_delivery((broker.get("spec") or {}).get("delivery"), status.get("deadLetterSinkUri"))
    click.echo()
    describe_conditions(broker)


delete_command(
    cli,
    BROKERS,
    "Broker",
    "Delete brokers (with their stored events; their triggers stay, not ready).",
)


def address(broker: dict[str, Any]) -> str:
    return str(((broker.get("status") or {}).get("address") or {}).get("url") or "")
