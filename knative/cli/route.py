"""`knserve route list|describe`."""

from __future__ import annotations

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

ROUTES = named("routes")


@click.group("route")
def cli() -> None:
    """Routes: list, describe."""


@cli.command("list")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def list_routes(namespace: str, api: str | None, output: str | None) -> None:
    """List routes with their URL and readiness."""
    items = make_client(api).list(ROUTES, namespace)
    if emit_list(items, output, namespace, "routes"):
        return
    rows = [
        (
            r["metadata"]["name"],
            (r.get("status") or {}).get("url", ""),
            age(r["metadata"].get("creationTimestamp")),
            *summary(r),
        )
        for r in items
    ]
    table(("NAME", "URL", "AGE", "CONDITIONS", "READY", "REASON"), rows)


@cli.command("describe")
@click.argument("name")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def describe(name: str, namespace: str, api: str | None, output: str | None) -> None:
    """Show a route: URL and where its traffic goes."""
    route = make_client(api).get(ROUTES, namespace, name)
    if emit(route, output):
        return
    status = route.get("status") or {}
    fields(
        [
            ("Name", name),
            ("Namespace", namespace),
            ("Age", age(route["metadata"].get("creationTimestamp"))),
            ("URL", status.get("url")),
            ("Service", route["metadata"].get("labels", {}).get("serving.knative.dev/service")),
        ]
    )
    click.echo("Traffic Targets:")
    for target in status.get("traffic") or []:
        name_ = (
            f"@latest ({target['revisionName']})"
            if target.get("latestRevision")
            else target["revisionName"]
        )
        click.echo(
            f"  {target.get('percent', 0):>4}%  {name_}"
            + (f" #{target['tag']}" if target.get("tag") else "")
        )
        if target.get("url"):
            click.echo(f"         URL:  {target['url']}")
    click.echo()
    describe_conditions(route)
