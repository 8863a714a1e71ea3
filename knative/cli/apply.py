"""`knserve apply -f FILE` and `knserve delete -f FILE`: every object of a YAML file (kubectl-style)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from knserve.knative.cli.output import api_option, make_client, target_options
from knserve.knative.errors import ApiError, NotFound


def file_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`-f FILE`, `-n` (instead of each object's own namespace), `--api` and the target options."""
    fn = api_option(target_options(fn))
    fn = click.option("-n", "--namespace")(fn)
    return click.option("-f", "--filename", "filename", required=True,
                        type=click.Path(path_type=Path, allow_dash=True))(fn)  # fmt: skip


@click.command("apply")
@file_options
def cli(filename: Path, namespace: str | None, api: str | None) -> None:
    """Create or update every object in FILE (one or many YAML documents)."""
    from knserve.knative.client import kind_of, load_documents

    client = make_client(api)
    try:
        for obj in load_documents(filename):
            action, result = client.apply(obj, namespace)
            click.echo(
                f"{kind_of(obj).plural}.{kind_of(obj).group}/{result['metadata']['name']} {action}"
            )
    except ApiError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.message}") from None


@click.command("delete")
@file_options
def delete_cli(filename: Path, namespace: str | None, api: str | None) -> None:
    """Delete every object in FILE."""
    from knserve.knative.client import kind_of, load_documents

    client = make_client(api)
    try:
        for obj in load_documents(filename):
            kind = kind_of(obj)
            ns = namespace or obj.get("metadata", {}).get("namespace") or "default"
            try:
                client.delete(kind, ns, obj["metadata"]["name"])
                click.echo(f"{kind.plural}.{kind.group}/{obj['metadata']['name']} deleted")
            except NotFound:
                click.echo(f"{kind.plural}.{kind.group}/{obj['metadata']['name']} not found")
    except ApiError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.message}") from None
