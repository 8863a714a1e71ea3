"""`knserve service create|update|describe|list|delete`, with kn's flags."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from typing import Any

import click

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
from knserve.knative.errors import ApiError
from knserve.knative.kinds import by_name

SERVICES, REVISIONS = by_name("services"), by_name("revisions")
SCALE = "autoscaling.knative.dev/"


def template_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The flags that change `spec.template` (create and update share them)."""
    options = [
        click.option("--image", help="container image (knserve/runtime, a `func build` image, …)"),
        click.option("--cmd", help="the command to run, instead of the image's (shell-split)"),
        click.option("--arg", "args", multiple=True, help="an argument (repeat for several)"),
        click.option("-e", "--env", "envs", multiple=True, help="K=V, or K- to remove"),
        click.option("-a", "--annotation", "annotations", multiple=True, help="K=V on the revision, or K-"),
        click.option("--scale-min", type=int), click.option("--scale-max", type=int),
        click.option("--scale-target", type=int, help="concurrency per replica the autoscaler aims at"),
        click.option("--scale-utilization", type=int, help="percent of the target"),
        click.option("--scale-window", help="stable window, e.g. 60s"),
        click.option("--concurrency-limit", type=int, help="hard limit of requests per replica"),
        click.option("--timeout", "timeout_seconds", type=int, help="request timeout in seconds"),
        click.option("--revision-name", help="name of the new revision ({{.Service}} and {{.Generation}} expand)"),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def traffic_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--traffic", multiple=True, help="REV=PCT, @latest=PCT or TAG=PCT (repeat or comma-separate)"),
        click.option("--tag", "tags", multiple=True, help="REV=TAG or @latest=TAG"),
        click.option("--untag", "untags", multiple=True, help="remove a tag"),
        click.option("--wait/--no-wait", default=True, show_default=True, help="wait until ready, then print the URL"),
        click.option("--wait-timeout", type=float, default=600, show_default=True),
        click.option("-o", "--output", type=OUTPUT, help="print the object instead"),
    ]  # fmt: skip
    for option in reversed(options):
        fn = option(fn)
    return fn


def _pairs(values: Sequence[str], flag: str) -> list[tuple[str, str | None]]:
    """`K=V` → (K, V); `K-` → (K, None) to remove."""
    out: list[tuple[str, str | None]] = []
    for value in values:
        if value.endswith("-") and "=" not in value:
            out.append((value[:-1], None))
            continue
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(
                f"{value!r}: write KEY=VALUE, or KEY- to remove", param_hint=flag
            )
        out.append((key, val))
    return out


def apply_template_flags(svc: dict[str, Any], opts: dict[str, Any]) -> None:
    """Change the Service's template as the flags say (in place)."""
    template = svc["spec"].setdefault("template", {})
    meta = template.setdefault("metadata", {})
    spec = template.setdefault("spec", {})
    containers = spec.setdefault("containers", [{}])
    container = containers[0]
    if opts.get("image"):
        container["image"] = opts["image"]
    if opts.get("cmd"):
        container["command"] = shlex.split(opts["cmd"])
    if opts.get("args"):
        container["args"] = list(opts["args"])
    env = {e["name"]: e for e in container.get("env") or []}
    for key, value in _pairs(opts.get("envs") or (), "--env"):
        if value is None:
            env.pop(key, None)
        else:
            env[key] = {"name": key, "value": value}
    if env or "env" in container:
        container["env"] = list(env.values())
    annotations = dict(meta.get("annotations") or {})
    for key, value in _pairs(opts.get("annotations") or (), "--annotation"):
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    scale = {"scale_min": "min-scale", "scale_max": "max-scale", "scale_target": "target",
             "scale_utilization": "target-utilization-percentage", "scale_window": "window"}  # fmt: skip
    for option, key in scale.items():
        if opts.get(option) is not None:
            annotations[SCALE + key] = str(opts[option])
    if annotations:
        meta["annotations"] = annotations
    if opts.get("concurrency_limit") is not None:
        spec["containerConcurrency"] = opts["concurrency_limit"]
    if opts.get("timeout_seconds") is not None:
        spec["timeoutSeconds"] = opts["timeout_seconds"]
    if opts.get("revision_name"):
        generation = svc.get("metadata", {}).get("generation", 0) + 1
        meta["name"] = (opts["revision_name"].replace("{{.Service}}", svc["metadata"]["name"])
                        .replace("{{.Generation}}", str(generation)))  # fmt: skip
    elif "name" in meta and _template_changed(opts):
        del meta[
            "name"
        ]  # a name is for one template: a new template without one gets a generated name
    if not meta:
        template.pop("metadata")


def _template_changed(opts: dict[str, Any]) -> bool:
    keys = ("image", "cmd", "args", "envs", "annotations", "scale_min", "scale_max", "scale_target",
            "scale_utilization", "scale_window", "concurrency_limit", "timeout_seconds")  # fmt: skip
    return any(opts.get(k) not in (None, ()) for k in keys)


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
        click.echo(f"Service '{name}' {verb.lower()} to latest revision "
                   f"'{svc['status'].get('latestReadyRevisionName')}' and is ready at URL:")  # fmt: skip
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
    svc: dict[str, Any] = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                           "metadata": {"name": name, "namespace": namespace}, "spec": {}}  # fmt: skip
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
        svc["metadata"] = current["metadata"]
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
    if _template_changed(opts) or opts.get("revision_name"):
        apply_template_flags(svc, opts)
    if opts["traffic"] or opts["tags"] or opts["untags"]:
        svc["spec"]["traffic"] = edit_traffic(svc["spec"].get("traffic"), opts["traffic"], opts["tags"],
                                              opts["untags"])  # fmt: skip
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
        rows.append((svc["metadata"]["name"], status.get("url", ""), status.get("latestCreatedRevisionName", ""),
                     age(svc["metadata"].get("creationTimestamp")), *summary(svc)))  # fmt: skip
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
    fields([("Name", name), ("Namespace", namespace), ("Age", age(svc["metadata"].get("creationTimestamp"))),
            ("URL", status.get("url"))])  # fmt: skip
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
