"""`knserve export -f FILE`: the Knative Services the InferenceServices (and InferenceGraphs)
of FILE become.

A multi-model InferenceService (no storageUri) also becomes the ConfigMap `modelconfig-{isvc}-0`
listing the file's TrainedModels for it, mounted on its predictor (see
`knative.kserve.trained_model.exported_model_config`).

An InferenceService in RawDeployment (Standard) mode becomes what KServe makes of it instead: per
component a Deployment, a Service and a HorizontalPodAutoscaler (`knative.kserve.raw_deployment`).

The translation is the controller's own (`knative.kserve.inferenceservice.knative_services`), with the
built-in serving runtimes plus the ServingRuntime (of the InferenceService's namespace) and
ClusterServingRuntime documents of the same file. `--target kube`
addresses components by their cluster-local names on port 8080, as on a cluster; `local` by the
local gateway's hosts. An exported InferenceService has no uid yet, and Kubernetes refuses an
owner reference without one, so such references are left out: the Services stand on their own.

An InferenceGraph becomes its router's Knative Service with KServe's router image
(`kserve/router`) and `--graph-json`, each `serviceName` step given the URL KServe's controller
would give it: the InferenceService's cluster-local address plus its predict path (read from the
InferenceService when the file has it, else protocol v1 and the InferenceService's name).

knserve's own runtimes name `{registry}/knserve/runtime:{tag}` (`--registry`, `--tag`, default no
registry and the package version; `knative.apiserver.release_images`), the image `make images`
builds; `--operator` prints the operator's install naming the operator image of the same release,
`--runtimes` knserve's own ClusterServingRuntimes (for a cluster where KServe's controller runs).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from knserve.knative.apiserver.release_images import (
    REGISTRY_ENV,
    RUNTIME,
    TAG_ENV,
    InvalidRelease,
    release,
)
from knserve.knative.cli.output import OUTPUT

ISVC_API_VERSION = "serving.kserve.io/v1beta1"


def _exported(
    documents: Sequence[dict[str, Any]],
    cluster: bool,
    domain: str,
    namespace: str | None,
    runtime_image: str | None = None,
) -> list[dict[str, Any]]:
    from knserve.knative.kserve.inferenceservice import (
        InvalidInferenceService,
        Target,
        knative_services,
    )
    from knserve.knative.kserve.raw_deployment import is_raw, raw_objects
    from knserve.knative.kserve.runtimes import builtin_runtimes, merge_runtimes

    target = Target(domain=domain, cluster=cluster)
    cluster_runtimes = [d for d in documents if d.get("kind") == "ClusterServingRuntime"]
    isvcs = [d for d in documents if d.get("kind") == "InferenceService"]
    graphs = [d for d in documents if d.get("kind") == "InferenceGraph"]
    if not isvcs and not graphs:
        found = ", ".join(
            f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}" for d in documents
        )
        raise click.ClickException(
            f"no InferenceService or InferenceGraph in the file (found: {found or 'nothing'})"
        )
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
            ],
            builtin_runtimes(runtime_image),
        )
        try:
            services = knative_services(isvc, runtimes, target)
        except InvalidInferenceService as exc:
            raise click.ClickException(f"InferenceService {meta.get('name')!r}: {exc}") from None
        trained = _trained_models(isvc, services, documents, runtimes)
        for ksvc in services:
            owners = [r for r in ksvc["metadata"].get("ownerReferences") or [] if r.get("uid")]
            if owners:
                ksvc["metadata"]["ownerReferences"] = owners
            else:
                ksvc["metadata"].pop("ownerReferences", None)
        annotations = meta.get("annotations") or {}
        if is_raw(annotations):  # KServe's Standard mode: Deployment, Service, HPA, no Knative
            services = [
                obj
                for ksvc in services
                for obj in raw_objects(
                    ksvc, isvc["spec"][ksvc["metadata"]["labels"]["component"]], annotations
                )
            ]
        out += services + trained
    return out + [_graph_router(graph, isvcs, namespace) for graph in graphs]


def _graph_router(
    graph: dict[str, Any], isvcs: Sequence[dict[str, Any]], namespace: str | None
) -> dict[str, Any]:
    from knserve.knative.apiserver.naming import CLUSTER_LOCAL_DOMAIN, hostname
    from knserve.knative.kserve.graph import (
        GraphNotReady,
        referenced_services,
        resolve_steps,
        router_service,
    )

    meta = graph.setdefault("metadata", {})
    ns = meta["namespace"] = namespace or meta.get("namespace") or "default"
    in_file = {i["metadata"]["name"]: i for i in isvcs if i["metadata"].get("namespace") == ns}
    addressed = {}
    for name in referenced_services(graph):
        isvc = in_file.get(name) or {"metadata": {"name": name}, "spec": {}}
        address = {"url": f"http://{hostname(name, ns, CLUSTER_LOCAL_DOMAIN)}"}
        addressed[name] = {**isvc, "status": {"address": address}}
    try:
        ksvc = router_service(graph, resolve_steps(graph, addressed))
    except GraphNotReady as exc:  # not reached: every step was given an address
        raise click.ClickException(f"InferenceGraph {meta.get('name')!r}: {exc}") from None
    ksvc["metadata"].pop("ownerReferences", None)
    return ksvc


def _trained_models(
    isvc: dict[str, Any],
    services: list[dict[str, Any]],
    documents: Sequence[dict[str, Any]],
    runtimes: Sequence[Any],
) -> list[dict[str, Any]]:
    """A multi-model InferenceService's TrainedModels (of the same file): the ConfigMap KServe's
    controller would keep, mounted on the predictor for knserve's runtime to load at start."""
    from knserve.knative.kserve.trained_model import (
        AGENT_ANNOTATION,
        config_entries,
        exported_model_config,
    )
    from knserve.knative.kserve.trained_model_controller import runtime_formats

    predictor = services[0]
    if AGENT_ANNOTATION not in predictor["spec"]["template"]["metadata"]["annotations"]:
        return []
    tms = [d for d in documents if d.get("kind") == "TrainedModel"]
    entries = config_entries(isvc, tms, runtime_formats(isvc, runtimes))
    return [exported_model_config(isvc, predictor, entries)]


@click.command("export")
@click.option(
    "-f",
    "--filename",
    "filename",
    type=click.Path(path_type=Path, allow_dash=True, exists=True, dir_okay=False),
    help="YAML with InferenceServices, InferenceGraphs (and ServingRuntimes); - for stdin",
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
@click.option(
    "--registry",
    envvar=REGISTRY_ENV,
    help=f"registry of knserve's images (`make images REGISTRY=`), e.g. ghcr.io/acme [${REGISTRY_ENV}]",
)
@click.option(
    "--tag",
    envvar=TAG_ENV,
    help=f"tag of knserve's images (`make images TAG=`; never latest) [${TAG_ENV}; the version]",
)
@click.option(
    "--operator",
    is_flag=True,
    help="print the operator's install (RBAC, Deployment) naming the images instead",
)
@click.option(
    "--runtimes",
    is_flag=True,
    help="print knserve's own ClusterServingRuntimes naming the runtime image instead",
)
@click.option("-o", "--output", type=OUTPUT, default="yaml", show_default=True)
def cli(
    filename: Path | None,
    target: str,
    domain: str,
    namespace: str | None,
    registry: str | None,
    tag: str | None,
    operator: bool,
    runtimes: bool,
    output: str,
) -> None:
    """Print the Knative Services the InferenceServices and InferenceGraphs in FILE become
    (knserve's runtimes named as `make images REGISTRY=… TAG=…` builds them), or with
    --operator the operator's own install, with --runtimes knserve's ClusterServingRuntimes."""
    import yaml

    from knserve.knative.apiserver.client import load_documents

    try:
        rel = release(registry, tag)
    except InvalidRelease as exc:
        raise click.ClickException(str(exc)) from None
    if operator:
        from knserve.knative.kube.manifests import operator_manifests

        services = operator_manifests(rel)
    elif runtimes:
        from knserve.knative.kserve.runtimes import knserve_runtimes

        services = knserve_runtimes(rel.image(RUNTIME))
    elif filename is None:
        raise click.UsageError(
            "give -f FILE (InferenceServices, InferenceGraphs), --operator or --runtimes"
        )
    else:
        try:
            documents = load_documents(filename)
        except yaml.YAMLError as exc:
            raise click.ClickException(f"{filename} is not valid YAML: {exc}") from None
        services = _exported(documents, target == "kube", domain, namespace, rel.image(RUNTIME))
    if output == "json":
        click.echo(json.dumps({"apiVersion": "v1", "kind": "List", "items": services}, indent=2))
        return
    click.echo(yaml.safe_dump_all(services, sort_keys=False).rstrip())
