"""`knserve tm list|describe|delete`: TrainedModels, as `kubectl get trainedmodels` shows them."""

from __future__ import annotations

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

TRAINED_MODELS = named("trainedmodels")


@click.group("tm")
def cli() -> None:
    """TrainedModels: list, describe, delete."""


@cli.command("list")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def list_trained_models(namespace: str, api: str | None, output: str | None) -> None:
    """List TrainedModels with their InferenceService, URL and readiness."""
    items = make_client(api).list(TRAINED_MODELS, namespace)
    if emit_list(items, output, namespace, "trainedmodels"):
        return
    rows = [
        (
            tm["metadata"]["name"],
            tm["spec"].get("inferenceService", ""),
            (tm.get("status") or {}).get("url", ""),
            age(tm["metadata"].get("creationTimestamp")),
            *summary(tm),
        )
        for tm in items
    ]
    table(("NAME", "INFERENCESERVICE", "URL", "AGE", "CONDITIONS", "READY", "REASON"), rows)


@cli.command("describe")
@click.argument("name")
@client_options
@click.option("-o", "--output", type=OUTPUT)
@reports_api_errors
def describe(name: str, namespace: str, api: str | None, output: str | None) -> None:
    """Show a TrainedModel: its model, where it answers, and its conditions."""
    tm = make_client(api).get(TRAINED_MODELS, namespace, name)
    if emit(tm, output):
        return
    model = tm["spec"].get("model") or {}
    fields(
        [
            ("Name", name),
            ("Namespace", namespace),
            ("Age", age(tm["metadata"].get("creationTimestamp"))),
            ("InferenceService", tm["spec"].get("inferenceService")),
            ("Storage URI", model.get("storageUri")),
            ("Framework", model.get("framework")),
            ("Memory", model.get("memory")),
            ("URL", (tm.get("status") or {}).get("url")),
        ]
    )
    describe_conditions(tm)


delete_command(cli, TRAINED_MODELS, "TrainedModel", "Delete TrainedModels (unloads them).")
