"""`knserve func …`: Knative func's workflow for Python functions (thin: knserve.functions does it)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from knserve.functions import funcyaml, templates
from knserve.functions.errors import FunctionError

LIST = "\0list"


def reports_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print FunctionError as `Error: message` with exit code 1."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FunctionError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)

    return wrapper


def progress(message: str) -> None:
    # Visible on a terminal, quiet when piped (scripts and CI read only the result).
    if sys.stderr.isatty():
        click.echo(f"… {message}", err=True)


@click.group("func")
def cli() -> None:
    """Functions: create, build, run, invoke, deploy, describe, list."""


@cli.command("create")
@click.argument("name", required=False)
@click.option("-l", "--language", default="python", show_default=True)
@click.option(
    "-t",
    "--template",
    default="http",
    show_default=True,
    is_flag=False,
    flag_value=LIST,
    help="http, cloudevents, predictor, transformer or explainer (no value: list them)",
)
@click.option(
    "-p", "--path", type=click.Path(path_type=Path), help="folder to create (default ./NAME)"
)
@click.option("--list", "show_list", is_flag=True, help="list the templates")
@reports_errors
def create(
    name: str | None, language: str, template: str, path: Path | None, show_list: bool
) -> None:
    """Create a function from a template."""
    if show_list or template == LIST:
        click.echo(templates.listing())
        return
    if not name:
        raise FunctionError("give the function's name: knserve func create -t TEMPLATE NAME")
    from knserve.functions.create import create_function

    folder = create_function(name, template, path, language)
    click.echo(f"Created {template} function {name} in {folder}")


@cli.command("build")
@click.option("-p", "--path", type=click.Path(path_type=Path), default=Path("."))
@reports_errors
def build(path: Path) -> None:
    """Build the function's environment (reused when nothing changed) and its Containerfile."""
    from knserve.functions.build import build_function

    result = build_function(path, progress)
    state = "up to date" if result.cached else "built"
    click.echo(f"{result.image} {state} in {result.seconds:.2f}s")


@cli.command("deploy")
@click.option("-p", "--path", type=click.Path(path_type=Path), default=Path("."))
@click.option("-n", "--namespace", help="default: func.yaml's deploy.namespace")
@click.option(
    "--build/--no-build", default=True, help="build first (default; a no-op when unchanged)"
)
@click.option("--wait/--no-wait", default=True, show_default=True)
@click.option("--wait-timeout", type=float, default=600, show_default=True)
@click.option("--api", envvar="KNSERVE_API", help="control API URL (default: the local plane)")
@reports_errors
def deploy(
    path: Path, namespace: str | None, build: bool, wait: bool, wait_timeout: float, api: str | None
) -> None:
    """Build if needed, then create or update the function's Knative Service."""
    from knserve.functions.deploy import service_for
    from knserve.knative.cli.output import reports_api_errors

    if build:
        from knserve.functions.build import build_function

        result = build_function(path, progress)
        click.echo(f"{result.image} {'up to date' if result.cached else 'built'}", err=True)
    spec = funcyaml.load(path)
    reports_api_errors(_deploy)(spec, service_for(spec, namespace), wait, wait_timeout, api)


def _deploy(
    spec: dict[str, Any], svc: dict[str, Any], wait: bool, wait_timeout: float, api: str | None
) -> None:
    from knserve.knative.apiserver.errors import NotFound
    from knserve.knative.apiserver.kinds import named
    from knserve.knative.cli.output import make_client, wait_ready

    services = named("services")
    client = make_client(api)
    meta = svc["metadata"]
    try:
        current = client.get(services, meta["namespace"], meta["name"])
    except NotFound:
        result, verb = client.create(services, svc), "created"
    else:
        current.pop("status", None)
        current["metadata"]["labels"] = {
            **(current["metadata"].get("labels") or {}),
            **meta["labels"],
        }
        current["spec"]["template"] = svc["spec"]["template"]  # traffic stays as the user set it
        result, verb = client.replace(services, current), "updated"
    _sync_triggers(client, spec, meta["namespace"], result)
    if wait:
        result = wait_ready(
            lambda: client.get(services, meta["namespace"], meta["name"]),
            f"function '{meta['name']}'",
            wait_timeout,
        )
        click.echo(
            f"Function {verb}: {result['status']['url']} "
            f"(revision {result['status'].get('latestReadyRevisionName')})"
        )
    else:
        click.echo(f"Function {verb}: service {meta['namespace']}/{meta['name']}")


def _sync_triggers(client: Any, spec: dict[str, Any], namespace: str, svc: dict[str, Any]) -> None:
    """Make the function's Triggers those of its `deploy.subscriptions`: apply each (a changed
    broker means delete and create, as a Trigger's broker is immutable on a cluster), then
    delete the function's Triggers no longer listed."""
    from knserve.functions.deploy import FUNCTION_LABEL, triggers_for
    from knserve.knative.apiserver.errors import NotFound
    from knserve.knative.apiserver.kinds import named

    kind = named("triggers")
    wanted = triggers_for(spec, namespace, owner=svc)
    names = {t["metadata"]["name"] for t in wanted}
    existing = {
        t["metadata"]["name"]: t
        for t in client.list(kind, namespace, label_selector=f"{FUNCTION_LABEL}={spec['name']}")
    }
    for trigger in wanted:
        name = trigger["metadata"]["name"]
        current = existing.get(name)
        if current is None:
            try:  # a Trigger of that name without the label (made by hand, or by func)
                current = client.get(kind, namespace, name)
            except NotFound:
                current = None
        if (
            current is not None
            and (current.get("spec") or {}).get("broker") != trigger["spec"]["broker"]
        ):
            client.delete(kind, namespace, name)
        verb, _ = client.apply(trigger)
        click.echo(f"Trigger {name} {verb} (broker {trigger['spec']['broker']})", err=True)
    for name in sorted(set(existing) - names):
        try:
            client.delete(kind, namespace, name)
        except NotFound:
            continue
        click.echo(f"Trigger {name} deleted (no longer in deploy.subscriptions)", err=True)


@cli.command("run")
@click.option("-p", "--path", type=click.Path(path_type=Path), default=Path("."))
@click.option("--port", type=int, default=8080, show_default=True)
@click.option(
    "--build/--no-build", default=True, help="build first (default) or run in this environment"
)
@reports_errors
def run(path: Path, port: int, build: bool) -> None:
    """Run the function on this machine and print its URL."""
    from knserve.functions.run import run_function

    sys.exit(run_function(path, port, build, progress=lambda m: click.echo(m, err=True)))


@cli.command("invoke")
@click.option("-p", "--path", type=click.Path(path_type=Path), default=Path("."))
@click.option(
    "-t",
    "--target",
    help="local (started by `func run`), remote (deployed) or a URL; "
    "default: local if it runs, else remote",
)
@click.option("--data", help="JSON data, or @file (default: the function's input.json, else {})")
@click.option(
    "-f",
    "--format",
    "fmt",
    type=click.Choice(["http", "cloudevent"]),
    default=None,
    help="default: func.yaml's invoke kind",
)
@click.option("--type", "ce_type", default="knserve.invoke", show_default=True)
@click.option("--source", "ce_source", default="knserve/cli", show_default=True)
@click.option(
    "-n", "--namespace", help="the deployed function's (default: func.yaml's deploy.namespace)"
)
@click.option("--api", envvar="KNSERVE_API", help="control API URL (default: the local plane)")
@click.option(
    "--gateway", envvar="KNSERVE_GATEWAY", help="the plane's gateway (default: the running plane's)"
)
@reports_errors
def invoke(
    path: Path,
    target: str | None,
    data: str | None,
    fmt: str | None,
    ce_type: str,
    ce_source: str,
    namespace: str | None,
    api: str | None,
    gateway: str | None,
) -> None:
    """Send the function an HTTP request or a CloudEvent and print the answer."""
    from knserve.functions.invoke import invoke as send
    from knserve.knative.cli.output import gateway_proxy

    spec: dict[str, Any] = {}
    if (path / funcyaml.FILENAME).is_file():
        spec = funcyaml.load(path)
    url = invocation_route(path, spec, target, namespace, api)
    fmt = fmt or ("cloudevent" if spec.get("invoke") == "cloudevent" else "http")
    answer = send(
        url,
        data,
        fmt,
        ce_type,
        ce_source,
        model=spec.get("name"),
        folder=path,
        proxy=gateway_proxy(url, gateway),
    )
    if fmt == "cloudevent":
        for key, value in sorted(answer.headers.items()):
            if key.startswith("ce-"):
                click.echo(f"{key}: {value}")
    click.echo(answer.body.decode("utf-8", "replace"))
    if answer.status >= 400:
        raise FunctionError(f"the function answered {answer.status}")


def invocation_route(
    path: Path, spec: dict[str, Any], target: str | None, namespace: str | None, api: str | None
) -> str:
    """func's `invocationRoute`: `local` is the instance `func run` started, `remote` the deployed
    Service's URL, anything else a URL; no target: local if it runs, else remote."""
    from knserve.functions.run import running_url

    if target not in (None, "local", "remote"):
        return target
    if target != "remote":
        try:
            return running_url(path)
        except FunctionError:
            if target == "local":
                raise
    try:
        return _deployed_url(spec, namespace, api)
    except FunctionError as exc:
        if target == "remote":
            raise
        raise FunctionError(
            f"the function in {path} is not running locally (start it with `knserve func "
            f"run`), and {exc}; or pass --target URL"
        ) from None


def _deployed_url(spec: dict[str, Any], namespace: str | None, api: str | None) -> str:
    from knserve.knative.apiserver.errors import ApiError, NotFound
    from knserve.knative.apiserver.kinds import named
    from knserve.knative.cli.output import make_client

    if not spec.get("name"):
        raise FunctionError("no func.yaml names a deployed function (pass --path)")
    name = spec["name"]
    namespace = namespace or (spec.get("deploy") or {}).get("namespace") or "default"
    try:
        svc = make_client(api).get(named("services"), namespace, name)
    except NotFound:
        raise FunctionError(
            f"it is not deployed in namespace {namespace!r} (`knserve func deploy`)"
        ) from None
    except ApiError as exc:
        raise FunctionError(f"its deployment cannot be looked up: {exc.message}") from None
    url = (svc.get("status") or {}).get("url")
    if not url:
        raise FunctionError(
            f"its Service {namespace}/{name} has no URL yet (`knserve service describe {name}`)"
        )
    return str(url)


@cli.command("describe")
@click.option("-p", "--path", type=click.Path(path_type=Path), default=Path("."))
@click.option("-o", "--output", type=click.Choice(["human", "yaml", "json"]), default="human")
@reports_errors
def describe(path: Path, output: str) -> None:
    """Show the function: name, runtime, invoke kind, image, environment, subscriptions."""
    spec = funcyaml.load(path)
    if output == "json":
        click.echo(json.dumps(spec, indent=2))
        return
    if output == "yaml":
        click.echo((path / funcyaml.FILENAME).read_text())
        return
    from knserve.functions.build import digest
    from knserve.functions.images import image_ref

    built = spec.get("image") == image_ref(spec["name"], digest(Path(path).resolve()))
    rows = [
        ("Name", spec["name"]),
        ("Runtime", spec.get("runtime", "")),
        ("Invoke", spec.get("invoke", "http")),
        (
            "Image",
            (spec.get("image") or "(not built)")
            + ("" if built or not spec.get("image") else "  (source changed since)"),
        ),
        ("Namespace", (spec.get("deploy") or {}).get("namespace", "default")),
    ]
    for key, value in funcyaml.envs(spec).items():
        rows.append(("Env", f"{key}={value}"))
    for sub in (spec.get("deploy") or {}).get("subscriptions") or []:
        rows.append(("Subscription", f"{sub['source']} {sub.get('filters', {})}"))
    for key, value in rows:
        click.echo(f"{key + ':':<14}{value}")


@cli.command("list")
@click.option("-o", "--output", type=click.Choice(["human", "json"]), default="human")
def list_functions(output: str) -> None:
    """List the functions built on this machine."""
    from knserve.functions.images import functions_home

    found = []
    home = functions_home()
    if home.is_dir():
        for manifest in sorted(home.glob("*/manifest.json")):
            found.append(json.loads(manifest.read_text()))
    if output == "json":
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("No functions built yet (knserve func build).")
        return
    click.echo(f"{'NAME':<24}{'INVOKE':<12}{'BUILT':<27}SOURCE")
    for item in found:
        click.echo(f"{item['name']:<24}{item['invoke']:<12}{item['built']:<27}{item['source']}")
