"""`knserve inferenceservice` (alias `isvc`): create, apply, list, describe, delete.

`create` works as `kubectl apply` does for InferenceServices: it creates the object or replaces
its spec, so running it again with a new `--storage-uri` and `--canary-traffic-percent 10` starts
a canary, and again without the percent promotes it. `create -f FILE` (and `apply -f FILE`)
applies every document of a YAML file, such as KServe's own examples, ServingRuntimes included.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
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
    ready_condition,
    reports_api_errors,
    table,
    wait_ready,
)
from knserve.knative.kserve.inferenceservice import COMPONENTS

ISVCS = named("inferenceservices")


def _predictor(opts: dict[str, Any]) -> dict[str, Any]:
    model: dict[str, Any] = {"modelFormat": {"name": opts["model_format"]}}
    model["storageUri"] = opts["storage_uri"]
    if opts.get("runtime"):
        model["runtime"] = opts["runtime"]
    predictor: dict[str, Any] = {"model": model}
    for option, field in (
        ("min_replicas", "minReplicas"),
        ("max_replicas", "maxReplicas"),
        ("scale_target", "scaleTarget"),
        ("scale_metric", "scaleMetric"),
        ("container_concurrency", "containerConcurrency"),
        ("timeout", "timeout"),
        ("canary_traffic_percent", "canaryTrafficPercent"),
    ):
        if opts.get(option) is not None:
            predictor[field] = opts[option]
    return predictor


def _documents(filename: Path) -> list[dict[str, Any]]:
    import yaml

    from knserve.knative.apiserver.client import load_documents

    try:
        return load_documents(filename)
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{filename} is not valid YAML: {exc}") from None


def _namespace_flag(namespace: str) -> str | None:
    """`-n` if given on the command line; else None, so that documents keep their own namespace."""
    source = click.get_current_context().get_parameter_source("namespace")
    return None if source is click.core.ParameterSource.DEFAULT else namespace


def _apply_all(
    client: Any, documents: list[dict[str, Any]], namespace: str | None
) -> list[dict[str, Any]]:
    """Apply every document, saying what happened to each; the InferenceServices are returned."""
    from knserve.knative.apiserver.client import kind_of

    applied = []
    for obj in documents:
        kind = kind_of(obj)
        action, result = client.apply(obj, namespace)
        click.echo(f"{kind.plural}.{kind.group}/{result['metadata']['name']} {action}", err=True)
        if kind is ISVCS:
            applied.append(result)
    return applied


def _finish(client: Any, isvcs: list[dict[str, Any]], opts: dict[str, Any]) -> None:
    if opts["wait"]:
        isvcs = [
            wait_ready(
                partial(client.get, ISVCS, isvc["metadata"]["namespace"], isvc["metadata"]["name"]),
                f"inferenceservice '{isvc['metadata']['name']}'",
                opts["wait_timeout"],
            )
            for isvc in isvcs
        ]
    if opts["output"]:
        emit(
            isvcs[0] if len(isvcs) == 1 else {"apiVersion": "v1", "kind": "List", "items": isvcs},
            opts["output"],
        )
        return
    for isvc in isvcs:
        name, url = isvc["metadata"]["name"], (isvc.get("status") or {}).get("url")
        if opts["wait"] and url:
            click.echo(f"InferenceService '{name}' is ready at URL:\n{url}")
        else:
            click.echo(
                f"InferenceService '{name}' applied in namespace '{isvc['metadata']['namespace']}'."
            )


def _wait_options(fn: Any) -> Any:
    options = [
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


@click.group("inferenceservice")
def cli() -> None:
    """InferenceServices: create, apply, list, describe, delete."""


@cli.command("create")
@click.argument("name", required=False)
@click.option(
    "-f",
    "--filename",
    type=click.Path(path_type=Path, allow_dash=True, exists=True, dir_okay=False),
    help="apply the documents of a YAML file instead",
)
@click.option("--model-format", help="sklearn, xgboost, lightgbm, onnx, pytorch, custom, …")
@click.option("--storage-uri", help="where the model is: a path, file://, http(s)://")
@click.option("--runtime", help="a ServingRuntime by name (default: the one that auto-selects)")
@click.option(
    "--canary-traffic-percent",
    type=click.IntRange(0, 100),
    help="percent for the new revision; the rest stays on the rolled-out one",
)
@click.option("--min-replicas", type=click.IntRange(0), help="default 1; 0 scales to zero")
@click.option("--max-replicas", type=click.IntRange(0), help="0 for no limit")
@click.option("--scale-target", type=click.IntRange(1), help="concurrency (or rps) per replica")
@click.option("--scale-metric", type=click.Choice(["concurrency", "rps"]))
@click.option(
    "--container-concurrency", type=click.IntRange(0), help="hard limit of requests per replica"
)
@click.option("--timeout", type=click.IntRange(1), help="request timeout in seconds")
@_wait_options
@client_options
@reports_api_errors
def create(
    name: str | None, filename: Path | None, namespace: str, api: str | None, **opts: Any
) -> None:
    """Create (or update) an InferenceService from flags, or every object of a YAML file."""
    client = make_client(api)
    if filename is not None:
        if name:
            raise click.UsageError("give NAME with flags, or -f FILE, not both")
        isvcs = _apply_all(client, _documents(filename), _namespace_flag(namespace))
    else:
        if not name or not opts.get("model_format") or not opts.get("storage_uri"):
            raise click.UsageError("give NAME --model-format F --storage-uri URI, or -f FILE")
        isvc = {
            "apiVersion": ISVCS.api_version,
            "kind": ISVCS.kind,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"predictor": _predictor(opts)},
        }
        isvcs = _apply_all(client, [isvc], namespace)
    _finish(client, isvcs, opts)


@cli.command("apply")
@click.option(
    "-f",
    "--filename",
    required=True,
    type=click.Path(path_type=Path, allow_dash=True, exists=True, dir_okay=False),
)
@_wait_options
@client_options
@reports_api_errors
def apply(filename: Path, namespace: str, api: str | None, **opts: Any) -> None:
    """Create or update every object of a YAML file (InferenceServices, ServingRuntimes)."""
    client = make_client(api)
    _finish(client, _apply_all(client, _documents(filename), _namespace_flag(namespace)), opts)


def _traffic_of(component: dict[str, Any]) -> tuple[str, str]:
    """(PREV, LATEST) percents as KServe's printer columns show them."""
    prev = latest = ""
    for entry in component.get("traffic") or []:
        if entry.get("tag") == "prev":
            prev = str(entry.get("percent", 0))
        elif entry.get("latestRevision") or entry.get("tag") == "latest":
            latest = str(int(latest or 0) + int(entry.get("percent", 0)))
    return prev, latest


@cli.command("list")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def list_isvcs(namespace: str, api: str | None, output: str | None) -> None:
    """List InferenceServices with KServe's columns."""
    items = make_client(api).list(ISVCS, namespace)
    if emit_list(items, output, namespace, "inferenceservices"):
        return
    rows = []
    for isvc in items:
        status = isvc.get("status") or {}
        predictor = (status.get("components") or {}).get("predictor") or {}
        ready = ready_condition(isvc)
        rows.append(
            (
                isvc["metadata"]["name"],
                status.get("url", ""),
                ready.get("status", "Unknown"),
                *_traffic_of(predictor),
                predictor.get("previousRolledoutRevision", ""),
                predictor.get("latestReadyRevision", ""),
                age(isvc["metadata"].get("creationTimestamp")),
            )
        )
    table(
        (
            "NAME",
            "URL",
            "READY",
            "PREV",
            "LATEST",
            "PREVROLLEDOUTREVISION",
            "LATESTREADYREVISION",
            "AGE",
        ),
        rows,
    )


@cli.command("describe")
@click.argument("name")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def describe(name: str, namespace: str, api: str | None, output: str | None) -> None:
    """Show an InferenceService: URL, components with revisions and traffic, conditions."""
    isvc = make_client(api).get(ISVCS, namespace, name)
    if emit(isvc, output):
        return
    status = isvc.get("status") or {}
    fields(
        [
            ("Name", name),
            ("Namespace", namespace),
            ("Age", age(isvc["metadata"].get("creationTimestamp"))),
            ("URL", status.get("url")),
            ("Address", (status.get("address") or {}).get("url")),
        ]
    )
    components = status.get("components") or {}
    declared = [c for c in COMPONENTS if (isvc.get("spec") or {}).get(c)]
    for component in declared:
        entry = components.get(component) or {}
        spec = isvc["spec"][component]
        canary = spec.get("canaryTrafficPercent")
        click.echo(f"\n{component.capitalize()}:")
        for label, value in (
            ("URL", entry.get("url")),
            ("Canary", None if canary is None else f"{canary}%"),
            ("Latest created", entry.get("latestCreatedRevision")),
            ("Latest ready", entry.get("latestReadyRevision")),
            ("Rolled out", entry.get("latestRolledoutRevision")),
            ("Previous", entry.get("previousRolledoutRevision")),
        ):
            if value:
                click.echo(f"  {label + ':':<16}{value}")
        traffic = entry.get("traffic") or []
        if traffic:
            click.echo("  Traffic:")
        for target in traffic:
            tag = f" [{target['tag']}]" if target.get("tag") else ""
            latest = " (latest)" if target.get("latestRevision") else ""
            click.echo(
                f"    {target.get('percent', 0):>4}%  {target.get('revisionName', '')}{latest}{tag}"
            )
            if target.get("url"):
                click.echo(f"           URL: {target['url']}")
    _describe_model(status.get("modelStatus") or {})
    click.echo()
    describe_conditions(isvc)


def _describe_model(model: dict[str, Any]) -> None:
    """KServe's modelStatus: the model's states, and why it last failed to load."""
    if not model:
        return
    states = model.get("states") or {}
    target, active = states.get("targetModelState"), states.get("activeModelState")
    state = f"{target} (serving: {active})" if active and active != target else target
    failure = model.get("lastFailureInfo") or {}
    where = [failure.get("reason")]
    if failure.get("exitCode") is not None:
        where.append(f"exit code {failure['exitCode']}")
    if failure.get("location"):
        where.append(f"in {failure['location']}")
    if failure.get("time"):
        where.append(f"{age(failure['time'])} ago")
    click.echo("\nModel:")
    for label, value in (
        ("State", state),
        ("Transition", model.get("transitionStatus")),
        ("Last failure", ", ".join(w for w in where if w)),
    ):
        if value:
            click.echo(f"  {label + ':':<16}{value}")
    for line in str(failure.get("message") or "").splitlines():
        click.echo(f"    {line}")


delete_command(
    cli,
    ISVCS,
    "InferenceService",
    "Delete InferenceServices (with their Knative Services and revisions).",
)
