"""`knserve service create|update|describe|list|delete`, with kn's flags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from knserve.knative.apiserver.errors import ApiError
from knserve.knative.apiserver.kinds import named
from knserve.knative.cli.configuration_flags import apply_template_flags, template_options
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
    wait_ready,
)
from knserve.knative.cli.revision import replicas_text
from knserve.knative.cli.traffic_flags import edit_traffic

SERVICES, REVISIONS = named("services"), named("revisions")


def traffic_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--traffic",
            multiple=True,
            help="REV=PCT, @latest=PCT or TAG=PCT (repeat or comma-separate)",
        ),
        click.option("--tag", "tags", multiple=True, help="REV=TAG or @latest=TAG"),
        click.option("--untag", "untags", multiple=True, help="remove a tag"),
        click.option(
            "--wait/--no-wait",
            default=True,
            show_default=True,
            help="wait until ready, then print the URL",
        ),
        click.option("--wait-timeout", type=float, default=600, show_default=True),
        click.option("-o", "--output", type=OUTPUT, help="print the object instead"),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _finish(client: Any, svc: dict[str, Any], verb: str, opts: dict[str, Any]) -> None:
    name, namespace = svc["metadata"]["name"], svc["metadata"]["namespace"]
    if opts["wait"]:
        click.echo(f"{verb} service '{name}' in namespace '{namespace}':", err=True)
        svc = wait_ready(
            lambda: client.get(SERVICES, namespace, name), f"service '{name}'", opts["wait_timeout"]
        )
    if emit(svc, opts["output"]):
        return
    if opts["wait"]:
        click.echo(
            f"Service '{name}' {verb.lower()} to latest revision "
            f"'{svc['status'].get('latestReadyRevisionName')}' and is ready at URL:"
        )
        click.echo(svc["status"]["url"])
    else:
        click.echo(f"Service '{name}' {verb.lower()} in namespace '{namespace}'.")


@click.group("service")
def cli() -> None:
    """Knative Services: create, update, describe, list, delete."""


@cli.command("create")
@click.argument("name")
@template_options
@traffic_options
@click.option("--force", is_flag=True, help="replace the service if it exists")
@client_options
@reports_api_errors
def create(name: str, namespace: str, api: str | None, force: bool, **opts: Any) -> None:
    """Create a service from an image or a command."""
    if not opts.get("image") and not opts.get("cmd"):
        raise click.UsageError("give --image (or --cmd for a plain command)")
    client = make_client(api)
    svc: dict[str, Any] = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {},
    }
    apply_template_flags(svc, opts)
    if opts["traffic"] or opts["tags"]:
        svc["spec"]["traffic"] = edit_traffic(None, opts["traffic"], opts["tags"], opts["untags"])
    try:
        created = client.create(SERVICES, svc)
        verb = "Created"
    except ApiError as exc:
        if exc.reason != "AlreadyExists" or not force:
            raise
        current = client.get(SERVICES, namespace, name)
        # kn's --force: the new object whole (its labels and annotations too) over the old one
        svc["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        created = client.replace(SERVICES, svc)
        verb = "Replaced"
    _finish(client, created, verb, opts)


@cli.command("update")
@click.argument("name")
@template_options
@traffic_options
@client_options
@reports_api_errors
def update(name: str, namespace: str, api: str | None, **opts: Any) -> None:
    """Change a service's template (a new revision) and/or its traffic."""
    client = make_client(api)
    svc = client.get(SERVICES, namespace, name)
    svc.pop("status", None)
    apply_template_flags(svc, opts)
    if opts["traffic"] or opts["tags"] or opts["untags"]:
        svc["spec"]["traffic"] = edit_traffic(
            svc["spec"].get("traffic"), opts["traffic"], opts["tags"], opts["untags"]
        )
    _finish(client, client.replace(SERVICES, svc), "Updated", opts)


@cli.command("list")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def list_services(namespace: str, api: str | None, output: str | None) -> None:
    """List services with their URL, latest revision and readiness."""
    items = make_client(api).list(SERVICES, namespace)
    if emit_list(items, output, namespace, "services"):
        return
    rows = []
    for svc in items:
        status = svc.get("status") or {}
        rows.append(
            (
                svc["metadata"]["name"],
                status.get("url", ""),
                status.get("latestReadyRevisionName", ""),
                age(svc["metadata"].get("creationTimestamp")),
                *summary(svc),
            )
        )
    table(("NAME", "URL", "LATEST", "AGE", "CONDITIONS", "READY", "REASON"), rows)


@cli.command("describe")
@click.argument("name")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def describe(name: str, namespace: str, api: str | None, output: str | None) -> None:
    """Show a service: URL, revisions with traffic, tags and replicas, conditions."""
    client = make_client(api)
    svc = client.get(SERVICES, namespace, name)
    if emit(svc, output):
        return
    status = svc.get("status") or {}
    fields(
        [
            ("Name", name),
            ("Namespace", namespace),
            ("Age", age(svc["metadata"].get("creationTimestamp"))),
            ("URL", status.get("url")),
        ]
    )
    revisions = {
        r["metadata"]["name"]: r
        for r in client.list(REVISIONS, namespace, f"serving.knative.dev/service={name}")
    }
    click.echo("\nRevisions:")
    shown = set()
    for target in status.get("traffic") or []:
        rev_name = target.get("revisionName", "")
        label = f"@latest ({rev_name})" if target.get("latestRevision") else rev_name
        tag = f" [{target['tag']}]" if target.get("tag") else ""
        _revision_lines(f"{target.get('percent', 0):>4}%", label + tag, revisions.get(rev_name))
        if target.get("tag"):
            click.echo(f"        URL:       {target['url']}")
        shown.add(rev_name)
    for rev_name in sorted(set(revisions) - shown, reverse=True):
        _revision_lines("     ", rev_name, revisions[rev_name])
    click.echo()
    describe_conditions(svc)


def _revision_lines(percent: str, label: str, revision: dict[str, Any] | None) -> None:
    if revision is None:
        click.echo(f"  {percent}  {label}")
        return
    generation = (
        revision["metadata"]
        .get("labels", {})
        .get("serving.knative.dev/configurationGeneration", "?")
    )
    click.echo(
        f"  {percent}  {label} #{generation} ({age(revision['metadata'].get('creationTimestamp'))})"
    )
    container = (revision["spec"].get("containers") or [{}])[0]
    image = container.get("image") or " ".join(container.get("command") or [])
    rstatus = revision.get("status") or {}
    click.echo(f"        Image:     {image}")
    click.echo(f"        Replicas:  {replicas_text(rstatus)}")


delete_command(
    cli, SERVICES, "Service", "Delete services (with their configurations, routes and revisions)."
)
