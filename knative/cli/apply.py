"""`knserve apply -f FILE` and `knserve delete -f FILE`: every object of a YAML file, as kubectl.

`apply` is kubectl's client-side apply on either target: it creates an object with the
last-applied annotation, or sends the three-way JSON merge patch of `last_applied.py`, so a field
or annotation removed from the file is removed from the object (KServe's promote YAML drops
`canaryTrafficPercent`) while fields other writers set stay. An object that has no last-applied
annotation loses nothing the first time (kubectl warns, and so does `apply`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from knserve.knative.apiserver.errors import ApiError, NotFound
from knserve.knative.cli.last_applied import (
    LAST_APPLIED,
    last_applied,
    three_way_merge_patch,
    with_last_applied,
)
from knserve.knative.cli.output import api_option, make_client, target_options


def file_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`-f FILE`, `-n` (instead of each object's own namespace), `--api` and the target options."""
    fn = api_option(target_options(fn))
    fn = click.option("-n", "--namespace")(fn)
    return click.option(
        "-f",
        "--filename",
        "filename",
        required=True,
        type=click.Path(path_type=Path, allow_dash=True),
    )(fn)


@click.command("apply")
@file_options
def cli(filename: Path, namespace: str | None, api: str | None) -> None:
    """Create or update every object in FILE (one or many YAML documents)."""
    from knserve.knative.apiserver.client import kind_of, load_documents

    client = make_client(api)
    try:
        for obj in load_documents(filename):
            action, result = apply_object(client, obj, namespace)
            click.echo(
                f"{kind_of(obj).plural}.{kind_of(obj).group}/{result['metadata']['name']} {action}"
            )
    except ApiError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.message}") from None


def apply_object(
    client: Any, obj: dict[str, Any], namespace: str | None = None
) -> tuple[str, dict[str, Any]]:
    """kubectl apply of one object: ("created" | "configured" | "unchanged", the object)."""
    from knserve.knative.apiserver.client import in_scope, kind_of

    kind = kind_of(obj)
    meta = obj.setdefault("metadata", {})
    scope = in_scope(kind, obj, namespace)
    modified = with_last_applied(obj)
    try:
        current = client.get(kind, scope, meta["name"])
    except NotFound:
        return "created", client.create(kind, modified)
    original = last_applied(current)
    if original is None:
        click.echo(
            f"Warning: {kind.plural}.{kind.group}/{meta['name']} has no {LAST_APPLIED} annotation, "
            "so this apply removes nothing; it adds the annotation, and the next apply removes "
            "what the file no longer has",
            err=True,
        )
    patch = three_way_merge_patch(original, modified, current)
    if not patch:
        return "unchanged", current
    return "configured", client.patch(kind, scope, meta["name"], patch)


@click.command("delete")
@file_options
def delete_cli(filename: Path, namespace: str | None, api: str | None) -> None:
    """Delete every object in FILE."""
    from knserve.knative.apiserver.client import kind_of, load_documents

    client = make_client(api)
    try:
        for obj in load_documents(filename):
            kind = kind_of(obj)
            ns = kind.scope(namespace or obj.get("metadata", {}).get("namespace"))
            try:
                client.delete(kind, ns, obj["metadata"]["name"])
                click.echo(f"{kind.plural}.{kind.group}/{obj['metadata']['name']} deleted")
            except NotFound:
                click.echo(f"{kind.plural}.{kind.group}/{obj['metadata']['name']} not found")
    except ApiError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.message}") from None
