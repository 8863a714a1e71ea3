"""`knserve export -f FILE`: the Knative Services the InferenceServices of FILE become.

The translation is the controller's own (`knative.kserve.inferenceservice.knative_services`), with the
built-in serving runtimes plus the ServingRuntime (of the InferenceService's namespace) and
ClusterServingRuntime documents of the same file. `--target kube`
addresses components by their cluster-local names on port 8080, as on a cluster; `local` by the
local gateway's hosts. An exported InferenceService has no uid yet, and Kubernetes refuses an
owner reference without one, so such references are left out: the Services stand on their own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from knserve.knative.cli.output import OUTPUT

ISVC_API_VERSION = "serving.kserve.io/v1beta1"


def _exported(
    documents: Sequence[dict[str, Any]], cluster: bool, domain: str, namespace: str | None
) -> list[dict[str, Any]]:
    from knserve.knative.kserve.inferenceservice import (
        InvalidInferenceService,
        Target,
        knative_services,
    )
    from knserve.knative.kserve.runtimes import merge_runtimes

    target = Target(domain=domain, cluster=cluster)
    cluster_runtimes = [d for d in documents if d.get("kind") == "ClusterServingRuntime"]
    isvcs = [d for d in documents if d.get("kind") == "InferenceService"]
    if not isvcs:
        found = ", ".join(
            f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}" for d in documents
        )
        raise click.ClickException(f"no InferenceService in the file (found: {found or 'nothing'})")
    out = []
    for isvc in isvcs:
        meta = isvc.setdefault("metadata", {})
        meta["namespace"] = namespace or meta.get("namespace") or "default"
        runtimes = merge_runtimes(
            [
                *(
                    d
                    for d in documents
                    if d.get("kind") == "ServingRuntime"
                    and (namespace or (d.get("metadata") or {}).get("namespace") or "default")
                    == meta["namespace"]
                ),
                *cluster_runtimes,
            ]
        )
        try:
            services = knative_services(isvc, runtimes, target)
        except InvalidInferenceService as exc:
            raise click.ClickException(f"InferenceService {meta.get('name')!r}: {exc}") from None
        for ksvc in services:
            owners = [r for r in ksvc["metadata"].get("ownerReferences") or [] if r.get("uid")]
            if owners:
                ksvc["metadata"]["ownerReferences"] = owners
            else:
                ksvc["metadata"].pop("ownerReferences", None)
        out += services
    return out


@click.command("export")
@click.option(
    "-f",
    "--filename",
    "filename",
    required=True,
    type=click.Path(path_type=Path, allow_dash=True, exists=True, dir_okay=False),
    help="YAML with InferenceServices (and optionally ServingRuntimes); - for stdin",
)
@click.option(
    "--target",
    type=click.Choice(["local", "kube"]),
    default="local",
    show_default=True,
    help="kube: cluster-local component hosts and port 8080, as Knative on a cluster",
)
@click.option("--domain", default="localhost", show_default=True, help="the local plane's domain")
@click.option("-n", "--namespace", help="namespace for objects that name none (default: default)")
@click.option("-o", "--output", type=OUTPUT, default="yaml", show_default=True)
def cli(filename: Path, target: str, domain: str, namespace: str | None, output: str) -> None:
    """Print the Knative Services the InferenceServices in FILE become."""
    import yaml

    from knserve.knative.apiserver.client import load_documents

    try:
        documents = load_documents(filename)
    except yaml.YAMLError as exc:
        raise click.ClickException(f"{filename} is not valid YAML: {exc}") from None
    services = _exported(documents, target == "kube", domain, namespace)
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": services}, indent=2))
        return
    click.echo(yaml.safe_dump_all(services, sort_keys=False).rstrip())
