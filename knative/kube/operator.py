"""The InferenceService operator for a cluster: kopf handlers around the local controller's logic.

On a cluster running Knative Serving, `python -m knserve.knative.operator` turns
`serving.kserve.io/v1beta1` InferenceServices into Knative Services, as the local plane's
`InferenceServiceController` does and with the same code: `knative_services` translates (with
`Target(cluster=True)`: components reach the predictor at `{isvc}-predictor.{namespace}` on port
8080), `isvc_status` derives the status, and the rolled-out revisions that canary traffic needs
come from the Knative Services' observed traffic, so promote and rollback need no memory of
their own. Reconciling is level-based and idempotent:

- read the InferenceService, its Knative Services (label `serving.kserve.io/inferenceservice`,
  controller owner reference) and the namespace's ServingRuntimes;
- server-side apply each component's Knative Service (field manager `knserve`; validated
  against Knative's schema first); delete those of components no longer declared;
- PUT the status subresource when it changed; a Conflict (someone wrote in between) re-reads
  and tries again.

kopf supplies the watching and the retries. The InferenceService is reconciled on create, update
and resume (operator start); every event of a Knative Service carrying the InferenceService
label reconciles its owner, which is how Knative's status (ready, URL, revisions, traffic)
reaches the InferenceService; a ServingRuntime event reconciles its namespace. Handlers are
synchronous (kopf runs them in its thread pool) because `KubeClient` is; one lock per
InferenceService keeps the create handler and a Knative Service event from reconciling the
same object at once.

kopf keeps its bookkeeping (which handlers ran, the last handled spec) in annotations under
`knserve.dev/`, not in `status`: the status is KServe's shape, which `kubectl get isvc` and
KServe's clients read. Deleting an InferenceService needs no handler and no finalizer: the
Knative Services' owner references let Kubernetes' garbage collector remove them.

InferenceGraphs (`serving.kserve.io/v1alpha1`) are reconciled beside them by `GraphReconciler`,
with the local controller's decision (`knative.kserve.graph_controller.desired_router`): the
router's Knative Service with KServe's router image, steps resolved from the InferenceServices'
addresses, the graph's status; an InferenceService event reconciles the graphs that name it.

kopf and `KubeClient` log in with the same credentials (the `login` handler hands kopf the
kubeconfig context, or the pod's service account, that the client was built from).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import click
import kopf

from knserve.knative.apiserver.errors import ApiError, Conflict, Invalid, NotFound
from knserve.knative.kserve.controller import (
    CLUSTER_SERVING_RUNTIME,
    ISVC,
    REVISION,
    SERVICE,
    SERVING_RUNTIME,
    ReconcileError,
    desired_services,
    owned_services,
    plan_services,
    revision_to_inspect,
    settled_status,
)
from knserve.knative.kserve.graph import GRAPH_LABEL, graph_status, referenced_services
from knserve.knative.kserve.graph_chain import async_broker, chain_status_annotations
from knserve.knative.kserve.graph_controller import (
    BROKER,
    GRAPH,
    TRIGGER,
    desired_router,
    trigger_plan,
)
from knserve.knative.kserve.inferenceservice import (
    ISVC_LABEL,
    Target,
)
from knserve.knative.kserve.runtimes import merge_runtimes
from knserve.knative.kube.client import KubeClient

__all__ = [
    "ANNOTATION_PREFIX",
    "CLUSTER",
    "GraphReconciler",
    "Reconciler",
    "main",
    "operator_settings",
    "registry",
    "run",
]

log = logging.getLogger(__name__)

CLUSTER = Target(cluster=True)
ANNOTATION_PREFIX = "knserve.dev"
# Attempts of one reconcile when the status write meets a Conflict; each re-reads everything.
CONFLICT_ATTEMPTS = 3
# Seconds before kopf retries a failed create/update/resume (the cluster was unreachable, RBAC
# refused, …): long enough not to hammer an API server that is struggling, short for a person.
RETRY_DELAY = 5.0


class Reconciler:
    """Reconciles InferenceServices into Knative Services through a `KubeClient` (module docstring)."""

    def __init__(self, client: KubeClient, target: Target = CLUSTER) -> None:
        self.client = client
        self.target = target
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_lock = threading.Lock()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def reconcile(self, namespace: str, name: str) -> dict[str, Any] | None:
        """Bring one InferenceService's Knative Services and status up to date; its status, or
        None when it no longer exists."""
        with self._lock(namespace, name):
            for attempt in range(1, CONFLICT_ATTEMPTS + 1):
                try:
                    return self._reconcile(namespace, name)
                except Conflict:
                    if attempt == CONFLICT_ATTEMPTS:
                        raise
                    log.debug(
                        "inferenceservice %s/%s changed meanwhile; reconciling again",
                        namespace,
                        name,
                    )
        return None  # not reached: the loop returns or raises

    def _reconcile(self, namespace: str, name: str) -> dict[str, Any] | None:
        isvc = self.client.find(ISVC, namespace, name)
        if isvc is None or isvc["metadata"].get("deletionTimestamp"):
            with self._locks_lock:
                self._locks.pop((namespace, name), None)
            return None  # the garbage collector removes its Knative Services
        meta = isvc["metadata"]
        owned = owned_services(
            isvc, self.client.list(SERVICE, namespace, f"{ISVC_LABEL}={meta['name']}")
        )
        desired, error = desired_services(
            isvc, owned, self._runtimes(namespace), self.target, _without_bookkeeping(isvc)
        )
        if error is None:
            owned, error = self._apply(isvc, owned, desired)
        status = settled_status(isvc, owned, self.target, error, self._revision(namespace, owned))
        if isvc.get("status") != status:
            isvc["status"] = status
            self.client.replace_status(ISVC, isvc)
        return status

    def _revision(
        self, namespace: str, owned: Mapping[str, dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The predictor's latest Revision while it is not ready on it (its failure, if any)."""
        name = revision_to_inspect(owned)
        if name is None:
            return None
        try:
            return self.client.find(REVISION, namespace, name)
        except ApiError:  # not allowed to read Revisions: the model status goes without
            return None

    def _runtimes(self, namespace: str) -> list[Mapping[str, Any]]:
        user: list[dict[str, Any]] = []
        for kind, scope in ((SERVING_RUNTIME, namespace), (CLUSTER_SERVING_RUNTIME, None)):
            try:
                user += self.client.list(kind, scope)
            except NotFound:  # its CRD is not installed (KServe treats that as none)
                pass
        return merge_runtimes(user)

    def _apply(
        self,
        isvc: Mapping[str, Any],
        owned: dict[str, dict[str, Any]],
        desired: Sequence[dict[str, Any]],
    ) -> tuple[dict[str, dict[str, Any]], ReconcileError | None]:
        """Carry out `plan_services` on the cluster (server-side apply); the owned Services by
        component afterwards, and the first error met on the way."""
        namespace = isvc["metadata"]["namespace"]
        plan = plan_services(
            isvc, owned, desired, lambda name: self.client.find(SERVICE, namespace, name)
        )
        result: dict[str, dict[str, Any]] = {}
        error = plan.error
        for write in plan.writes:
            try:
                _, result[write.component] = self.client.apply(write.desired)
            except Invalid as exc:  # the translation breaks Knative's schema: the user's fields
                error = error or ReconcileError("InvalidSpec", exc.message)
                if write.current is not None:
                    result[write.component] = write.current
        for name in plan.deletes:
            try:
                self.client.delete(SERVICE, namespace, name)
            except NotFound:
                pass
        return result, error


class GraphReconciler:
    """Reconciles InferenceGraphs into router Knative Services through a `KubeClient`."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    def reconcile(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The graph's router, Triggers and status brought up to date; its status, or None."""
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return self._reconcile(namespace, name)
            except Conflict:
                if attempt == CONFLICT_ATTEMPTS:
                    raise
        return None  # not reached: the loop returns or raises

    def _reconcile(self, namespace: str, name: str) -> dict[str, Any] | None:
        graph = self.client.find(GRAPH, namespace, name)
        if graph is None or graph["metadata"].get("deletionTimestamp"):
            return None  # the garbage collector removes its router
        graph = _without_bookkeeping(graph)
        current = self.client.find(SERVICE, namespace, name)
        isvcs = {ref: self.client.find(ISVC, namespace, ref) for ref in referenced_services(graph)}
        broker_name = async_broker(graph)
        broker = self.client.find(BROKER, namespace, broker_name) if broker_name else None
        desired, problem = desired_router(graph, current, isvcs, broker)
        if desired is not None:
            _, current = self.client.apply(desired)
            existing = self.client.list(TRIGGER, namespace, f"{GRAPH_LABEL}={name}")
            wanted, stale = trigger_plan(graph, existing)
            for trigger in wanted:
                self.client.apply(trigger)
            for stale_name in stale:
                self.client.delete(TRIGGER, namespace, stale_name)
        elif problem is not None and problem.reason == "ServiceConflict":
            current = None
        status = graph_status(graph, current, problem, chain_status_annotations(graph))
        found = self.client.get(GRAPH, namespace, name)
        if found.get("status") != status:
            found["status"] = status
            self.client.replace_status(GRAPH, found)
        return status


def _without_bookkeeping(isvc: Mapping[str, Any]) -> dict[str, Any]:
    """The InferenceService without kopf's annotations, which the translation would otherwise
    copy into every revision template (and roll out a new revision when kopf writes them)."""
    meta = dict(isvc["metadata"])
    meta["annotations"] = {
        key: value
        for key, value in (meta.get("annotations") or {}).items()
        if not key.startswith(f"{ANNOTATION_PREFIX}/")
    }
    return {**isvc, "metadata": meta}


# ---- kopf ------------------------------------------------------------------------------------


def operator_settings(*, posting: bool = True, scanning: bool = True) -> kopf.OperatorSettings:
    """kopf's settings for this operator.

    `posting` sends Kubernetes Events about handlers (off for an API server without core
    events); `scanning` lets kopf list namespaces and CRDs to follow ones created later (off when
    it may not, or the server does not serve them: exact `namespaces` are then taken as given).
    """
    settings = kopf.OperatorSettings()
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.posting.enabled = posting
    settings.scanning.disabled = not scanning
    # The API server ends a watch after 30-60 minutes of its own choosing; a connection that
    # died silently (a NAT or load balancer timeout) would go unnoticed that long. Ten minutes
    # bounds the delay, and re-listing every ten minutes costs little.
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 630
    return settings


def registry(
    reconciler: Reconciler, graphs: GraphReconciler | None = None
) -> kopf.OperatorRegistry:
    """The operator's handlers, registered on a registry of their own (nothing at import)."""
    handlers = kopf.OperatorRegistry()
    graph_reconciler = graphs or GraphReconciler(reconciler.client)
    isvc = (ISVC.group, ISVC.version, ISVC.plural)
    ksvc = (SERVICE.group, SERVICE.version, SERVICE.plural)
    runtimes = (SERVING_RUNTIME.group, SERVING_RUNTIME.version, SERVING_RUNTIME.plural)
    cluster_runtimes = (
        CLUSTER_SERVING_RUNTIME.group,
        CLUSTER_SERVING_RUNTIME.version,
        CLUSTER_SERVING_RUNTIME.plural,
    )

    # The handlers take what kopf's protocols (kopf.ChangingFn, kopf.WatchingFn) pass: `namespace`
    # is None only for a cluster-scoped resource (a ClusterServingRuntime).
    def retried(reconcile_one: Callable[[str, str], object]) -> Callable[[str | None, str], None]:
        def reconcile_or_retry(namespace: str | None, name: str) -> None:
            if namespace is None:
                return
            try:
                reconcile_one(namespace, name)
            except ApiError as exc:
                raise kopf.TemporaryError(
                    f"{exc.reason}: {exc.message}", delay=RETRY_DELAY
                ) from None

        return reconcile_or_retry

    reconcile = retried(reconciler.reconcile)
    reconcile_graph = retried(graph_reconciler.reconcile)

    @kopf.on.login(id="login", registry=handlers)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(reconciler.client)

    @kopf.on.create(*isvc, id="reconcile", registry=handlers)
    @kopf.on.update(*isvc, id="reconcile", registry=handlers)
    @kopf.on.resume(*isvc, id="reconcile", registry=handlers)
    def isvc_changed(*, namespace: str | None, name: str, **_: Any) -> None:
        reconcile(namespace, name)

    @kopf.on.event(
        *ksvc, id="knative-service", labels={ISVC_LABEL: kopf.PRESENT}, registry=handlers
    )
    def ksvc_event(*, namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
        reconcile(namespace, labels[ISVC_LABEL])

    ig = (GRAPH.group, GRAPH.version, GRAPH.plural)

    @kopf.on.create(*ig, id="reconcile-graph", registry=handlers)
    @kopf.on.update(*ig, id="reconcile-graph", registry=handlers)
    @kopf.on.resume(*ig, id="reconcile-graph", registry=handlers)
    def graph_changed(*, namespace: str | None, name: str, **_: Any) -> None:
        reconcile_graph(namespace, name)

    @kopf.on.event(*ksvc, id="graph-router", labels={GRAPH_LABEL: kopf.PRESENT}, registry=handlers)
    def router_event(*, namespace: str | None, labels: Mapping[str, str], **_: Any) -> None:
        reconcile_graph(namespace, labels[GRAPH_LABEL])

    @kopf.on.event(*isvc, id="graph-steps", registry=handlers)
    def step_event(*, namespace: str | None, name: str, **_: Any) -> None:
        if namespace is None:
            return
        try:
            graphs = reconciler.client.list(GRAPH, namespace)
        except NotFound:  # the InferenceGraph CRD is not installed
            return
        for found in graphs:
            if name in referenced_services(found):
                reconcile_graph(namespace, found["metadata"]["name"])

    @kopf.on.event(*runtimes, id="servingruntime", registry=handlers)
    def runtime_event(*, namespace: str | None, **_: Any) -> None:
        if namespace is None:
            return
        for found in reconciler.client.list(ISVC, namespace):
            reconcile(namespace, found["metadata"]["name"])

    @kopf.on.event(*cluster_runtimes, id="clusterservingruntime", registry=handlers)
    def cluster_runtime_event(**_: Any) -> None:
        for found in reconciler.client.list(ISVC):
            reconcile(found["metadata"]["namespace"], found["metadata"]["name"])

    return handlers


def connection_info(client: KubeClient) -> kopf.ConnectionInfo:
    """kopf's credentials from the client's configuration (as kopf's own `login_via_client`)."""
    config = client.api_client.configuration
    # Since kubernetes 36 the token is kept under BearerToken; before, under authorization.
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix(
        "authorization"
    )
    scheme, _, token = (header or "").rpartition(" ")
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
        default_namespace=client.namespace,
    )


def run(
    client: KubeClient,
    *,
    namespaces: Collection[str] = (),
    clusterwide: bool = False,
    standalone: bool = True,
    liveness_endpoint: str | None = None,
    posting: bool = True,
    scanning: bool = True,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
) -> None:
    """Run the operator until `stop_flag` is set (or SIGINT/SIGTERM in the main thread)."""
    if not clusterwide and not namespaces:
        raise ValueError("give the namespaces to serve, or clusterwide=True")
    kopf.run(
        registry=registry(Reconciler(client)),
        settings=operator_settings(posting=posting, scanning=scanning),
        standalone=standalone,
        clusterwide=clusterwide,
        namespaces=() if clusterwide else list(namespaces),
        liveness_endpoint=liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


@click.command(
    context_settings={
        "help_option_names": ["-h", "--help"],
        "auto_envvar_prefix": "KNSERVE_OPERATOR",
    }
)
@click.option(
    "-n",
    "--namespace",
    "namespaces",
    multiple=True,
    help="a namespace to serve (repeatable; kopf globs such as 'ml-*' work)",
)
@click.option("-A", "--all-namespaces", is_flag=True, help="serve every namespace")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="kubeconfig file (default: the pod's service account, else $KUBECONFIG)",
)
@click.option("--context", help="kubeconfig context (default: the current one)")
@click.option(
    "--standalone/--peering",
    default=True,
    show_default=True,
    help="--peering coordinates replicas through kopf's peering CRD",
)
@click.option(
    "--liveness",
    "liveness_endpoint",
    metavar="URL",
    help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz",
)
@click.option(
    "--posting/--no-posting",
    default=True,
    show_default=True,
    help="post Kubernetes Events about reconciling",
)
@click.option("-v", "--verbose", is_flag=True, help="log kopf's and knserve's debug messages")
def main(
    namespaces: tuple[str, ...],
    all_namespaces: bool,
    kubeconfig: str | None,
    context: str | None,
    standalone: bool,
    liveness_endpoint: str | None,
    posting: bool,
    verbose: bool,
) -> None:
    """Reconcile KServe InferenceServices into Knative Services on a cluster."""
    if bool(namespaces) == all_namespaces:
        raise click.UsageError("give --namespace NAME (repeatable) or --all-namespaces, not both")
    kopf.configure(verbose=verbose)
    try:
        client = KubeClient.from_environment(kubeconfig, context)
    except ApiError as exc:
        raise click.ClickException(exc.message) from None
    run(
        client,
        namespaces=namespaces,
        clusterwide=all_namespaces,
        standalone=standalone,
        liveness_endpoint=liveness_endpoint,
        posting=posting,
    )


if __name__ == "__main__":
    main()
