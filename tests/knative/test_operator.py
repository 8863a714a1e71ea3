"""The kopf operator and its manifests, against a Kubernetes-API server on loopback.

The server is the local plane's control API, which serves the core discovery documents, namespaces
and Events kopf reads besides the custom resources. No Knative controller runs there, so where the tests need
Knative's part (a revision, a ready status) they write it through the API as Knative would.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import pytest
import yaml
from click.testing import CliRunner
from kube_server import TOKEN, Switchboard, write_kubeconfig
from net_fixtures import eventually, free_port, serve_in_thread

import knserve.knative
from knserve.knative.apiserver.errors import Conflict, NotFound
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.schema_validation import crd as schema_crd
from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store
from knserve.knative.kserve.inferenceservice import Target, knative_services
from knserve.knative.kserve.runtimes import merge_runtimes
from knserve.knative.kube.client import KubeClient
from knserve.knative.kube.operator import ANNOTATION_PREFIX, Reconciler, main, run

SERVICES, ISVCS, REVISIONS = by_name("services"), by_name("inferenceservices"), by_name("revisions")
RUNTIMES = by_name("servingruntimes")
PACKAGE = Path(knserve.knative.__file__).parent
DEPLOY = PACKAGE / "deploy"


def iris(
    canary: int | None = None,
    storage: str = "gs://kfserving-examples/models/sklearn/1.0/model",
    transformer: bool = False,
) -> dict[str, Any]:
    predictor: dict[str, Any] = {
        "model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage}
    }
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    spec: dict[str, Any] = {"predictor": predictor}
    if transformer:
        spec["transformer"] = {
            "containers": [{"name": "kserve-container", "image": "example/transformer"}]
        }
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "namespace": "default"},
        "spec": spec,
    }


def knative_marks_ready(kube: KubeClient, service: str, revision: str) -> None:
    """What Knative Serving does once a revision is up: the Revision, then the Service's status
    (read again and retried on a Conflict, as a controller does)."""
    ksvc = kube.get(SERVICES, "default", service)
    kube.create(
        REVISIONS,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": {"name": revision, "namespace": "default"},
            "spec": ksvc["spec"]["template"]["spec"],
        },
    )
    for _ in range(5):
        try:
            kube.replace_status(SERVICES, _ready(kube.get(SERVICES, "default", service), revision))
            return
        except Conflict:
            continue
    raise AssertionError(f"{service} kept changing under its status update")


def _ready(ksvc: dict[str, Any], revision: str) -> dict[str, Any]:
    service = ksvc["metadata"]["name"]
    url = f"http://{service}.default.example.com"
    ksvc["status"] = {
        "observedGeneration": ksvc["metadata"]["generation"],
        "conditions": [{"type": "Ready", "status": "True"}],
        "url": url,
        "address": {"url": f"http://{service}.default.svc.cluster.local"},
        "latestCreatedRevisionName": revision,
        "latestReadyRevisionName": revision,
        "traffic": [
            {
                "revisionName": revision,
                "latestRevision": True,
                "percent": 100,
                "tag": "latest",
                "url": f"http://latest-{service}.default.example.com",
            }
        ],
    }
    return ksvc


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}


@pytest.fixture(scope="module")
def switchboard() -> Iterator[tuple[Switchboard, str]]:
    board = Switchboard()
    with serve_in_thread(board) as url:
        yield board, url


@pytest.fixture
def kubeconfig(tmp_path: Path, switchboard: tuple[Switchboard, str]) -> Iterator[Path]:
    board, url = switchboard
    store = Store(tmp_path / "state.db")
    board.app = create_app(store, token=TOKEN)
    yield write_kubeconfig(tmp_path / "kubeconfig", url)
    board.app = None
    store.close()


@pytest.fixture
def kube(kubeconfig: Path) -> Iterator[KubeClient]:
    client = KubeClient.from_kubeconfig(kubeconfig)
    yield client
    client.close()


# ---- the reconciler ----------------------------------------------------------------------------


def test_reconciling_makes_owned_knative_services_with_the_shared_translation(
    kube: KubeClient,
) -> None:
    kube.apply(iris(transformer=True))
    Reconciler(kube).reconcile("default", "iris")
    isvc = kube.get(ISVCS, "default", "iris")
    made = {s["metadata"]["name"]: s for s in kube.list(SERVICES, "default")}
    expected = knative_services(isvc, merge_runtimes([]), Target(cluster=True), {})
    assert sorted(made) == ["iris-predictor", "iris-transformer"]
    for want in expected:
        got = made[want["metadata"]["name"]]
        assert got["spec"] == want["spec"]
        assert got["metadata"]["labels"] == want["metadata"]["labels"]
        assert got["metadata"]["ownerReferences"] == [
            {
                "apiVersion": "serving.kserve.io/v1beta1",
                "kind": "InferenceService",
                "name": "iris",
                "uid": isvc["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    args = made["iris-transformer"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--predictor_host") + 1] == "iris-predictor.default"  # cluster-local
    assert args[args.index("--http_port") + 1] == "8080"
    assert conditions(isvc) == dict.fromkeys(
        [
            "PredictorReady",
            "TransformerReady",
            "IngressReady",
            "Ready",
            "RoutesReady",
            "LatestDeploymentReady",
            "PredictorRouteReady",
            "PredictorConfigurationReady",
            "TransformerRouteReady",
            "TransformerConfigurationReady",
        ],
        "Unknown",
    )


def test_a_crashed_predictor_revision_on_the_cluster_becomes_the_model_status(
    kube: KubeClient,
) -> None:
    reconciler = Reconciler(kube)
    kube.apply(iris())
    reconciler.reconcile("default", "iris")
    ksvc = kube.get(SERVICES, "default", "iris-predictor")
    revision = kube.create(
        REVISIONS,
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Revision",
            "metadata": {"name": "iris-predictor-00001", "namespace": "default"},
            "spec": ksvc["spec"]["template"]["spec"],
        },
    )
    why = "knserve.runtime: model iris failed to load: cannot load scikit-learn model"
    crashed = {"status": "False", "reason": "ExitCode1", "message": f"Container failed with: {why}"}
    revision["status"] = {
        "conditions": [{"type": "Ready", **crashed}, {"type": "ContainerHealthy", **crashed}]
    }
    kube.replace_status(REVISIONS, revision)
    failed = {"status": "False", "reason": "RevisionFailed", "message": "Revision failed"}
    ksvc["status"] = {
        "observedGeneration": ksvc["metadata"]["generation"],
        "latestCreatedRevisionName": "iris-predictor-00001",
        "conditions": [{"type": "Ready", **failed}],
    }
    kube.replace_status(SERVICES, ksvc)
    status = reconciler.reconcile("default", "iris")
    assert status is not None
    failure = status["modelStatus"]["lastFailureInfo"]
    assert (failure["reason"], failure["exitCode"], failure["message"]) == (
        "ModelLoadFailed",
        1,
        why,
    )
    assert failure["location"] == "iris-predictor-00001"
    assert status["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"


def test_knatives_status_reaches_the_inferenceservice_and_canary_traffic_follows(
    kube: KubeClient,
) -> None:
    reconciler = Reconciler(kube)
    kube.apply(iris())
    reconciler.reconcile("default", "iris")
    knative_marks_ready(kube, "iris-predictor", "iris-predictor-00001")
    status = reconciler.reconcile("default", "iris")
    assert status is not None and conditions({"status": status})["Ready"] == "True"
    predictor = status["components"]["predictor"]
    assert predictor["url"] == "http://iris-predictor.default.example.com"
    assert predictor["latestRolledoutRevision"] == "iris-predictor-00001"
    # the cluster's domain, read off Knative's URL as KServe does
    assert status["url"] == "http://iris.default.example.com"
    assert status["address"]["url"] == "http://iris.default.svc.cluster.local"
    assert kube.get(ISVCS, "default", "iris")["status"] == status

    kube.apply(iris(canary=10, storage="gs://kfserving-examples/models/sklearn/2.0/model"))
    reconciler.reconcile("default", "iris")
    assert kube.get(SERVICES, "default", "iris-predictor")["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 10},
        {
            "tag": "prev",
            "revisionName": "iris-predictor-00001",
            "latestRevision": False,
            "percent": 90,
        },
    ]
    kube.apply(iris(storage="gs://kfserving-examples/models/sklearn/2.0/model"))  # promote
    reconciler.reconcile("default", "iris")
    assert kube.get(SERVICES, "default", "iris-predictor")["spec"]["traffic"] == [
        {"tag": "latest", "latestRevision": True, "percent": 100}
    ]


def test_the_operators_bookkeeping_annotations_stay_out_of_the_revisions(kube: KubeClient) -> None:
    isvc = iris()
    isvc["metadata"]["annotations"] = {
        f"{ANNOTATION_PREFIX}/last-handled-configuration": "{}",
        "team.example.com/owner": "ml",
    }
    kube.apply(isvc)
    Reconciler(kube).reconcile("default", "iris")
    template = kube.get(SERVICES, "default", "iris-predictor")["spec"]["template"]
    assert template["metadata"]["annotations"]["team.example.com/owner"] == "ml"
    assert not [
        key for key in template["metadata"]["annotations"] if key.startswith(ANNOTATION_PREFIX)
    ]


def test_a_component_dropped_from_the_spec_loses_its_knative_service(kube: KubeClient) -> None:
    reconciler = Reconciler(kube)
    kube.apply(iris(transformer=True))
    reconciler.reconcile("default", "iris")
    kube.apply(iris())
    reconciler.reconcile("default", "iris")
    assert [s["metadata"]["name"] for s in kube.list(SERVICES, "default")] == ["iris-predictor"]


def test_an_untranslatable_inferenceservice_is_not_ready_with_the_reason(kube: KubeClient) -> None:
    isvc = iris()
    isvc["spec"]["predictor"]["model"]["modelFormat"]["name"] = "cobol"
    kube.apply(isvc)
    status = Reconciler(kube).reconcile("default", "iris")
    assert status is not None
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert "no serving runtime auto-selects model format 'cobol'" in ready["message"]
    assert kube.list(SERVICES, "default") == []


def test_a_knative_service_of_someone_else_is_left_alone(kube: KubeClient) -> None:
    theirs = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "iris-predictor"},
        "spec": {"template": {"spec": {"containers": [{"image": "example/theirs"}]}}},
    }
    kube.apply(copy.deepcopy(theirs))
    kube.apply(iris())
    status = Reconciler(kube).reconcile("default", "iris")
    assert status is not None
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ServiceConflict")
    image = kube.get(SERVICES, "default", "iris-predictor")["spec"]["template"]["spec"]
    assert image["containers"][0]["image"] == "example/theirs"


class _WithoutServingRuntimes:
    """A cluster where KServe's ServingRuntime CRD is not installed: the API server's 404."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and "/servingruntimes" in scope["path"]:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "NotFound",
                "code": 404,
                "message": "the server could not find the requested resource",
            }
            await send(
                {
                    "type": "http.response.start",
                    "status": 404,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": json.dumps(status).encode()})
            return
        await self.app(scope, receive, send)


def test_without_the_servingruntime_crd_the_built_in_runtimes_serve(
    kube: KubeClient, switchboard: tuple[Switchboard, str]
) -> None:
    board, _ = switchboard
    board.app = _WithoutServingRuntimes(board.app)
    with pytest.raises(NotFound, match="install its CRD .*serving.kserve.io_servingruntimes.yaml"):
        kube.list(RUNTIMES, "default")
    kube.apply(iris())
    Reconciler(kube).reconcile("default", "iris")
    container = kube.get(SERVICES, "default", "iris-predictor")["spec"]["template"]["spec"]
    assert "--model_format=sklearn" in container["containers"][0]["args"]


def test_a_deleted_inferenceservice_reconciles_to_nothing(kube: KubeClient) -> None:
    assert Reconciler(kube).reconcile("default", "gone") is None


# ---- kopf --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "scope",
    [
        # Exact namespaces; scanning off, since the control API lists no namespaces.
        pytest.param({"namespaces": ["default"], "scanning": False}, id="namespaced"),
        # What the Deployment runs: every namespace, with kopf's resource scanning.
        pytest.param({"clusterwide": True}, id="all-namespaces"),
    ],
)
def test_the_kopf_operator_reconciles_an_inferenceservice_on_a_loopback_api_server(
    kube: KubeClient, kubeconfig: Path, scope: dict[str, Any]
) -> None:
    operator_client = KubeClient.from_kubeconfig(kubeconfig)
    stop, ready = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def operate() -> None:
        try:
            run(operator_client, posting=False, stop_flag=stop, ready_flag=ready, **scope)
        except BaseException as exc:  # surfaced by the assertion below
            failures.append(exc)

    thread = threading.Thread(target=operate, name="kopf-operator")
    thread.start()
    try:
        assert ready.wait(15), failures
        kube.apply(iris())
        ksvc = eventually(lambda: kube.find(SERVICES, "default", "iris-predictor"))
        isvc = kube.get(ISVCS, "default", "iris")
        assert ksvc["metadata"]["ownerReferences"][0]["uid"] == isvc["metadata"]["uid"]
        eventually(lambda: conditions(kube.get(ISVCS, "default", "iris")).get("Ready") == "Unknown")
        # kopf's annotations on the InferenceService do not leak into the template: no new revision.
        assert kube.get(SERVICES, "default", "iris-predictor")["metadata"]["generation"] == 1

        # Knative's status change reaches the InferenceService through the Service's events.
        knative_marks_ready(kube, "iris-predictor", "iris-predictor-00001")

        def ready_isvc() -> dict[str, Any] | None:
            found = kube.get(ISVCS, "default", "iris")
            return found if conditions(found).get("Ready") == "True" else None

        isvc = eventually(ready_isvc)
        assert (
            isvc["status"]["components"]["predictor"]["latestRolledoutRevision"]
            == "iris-predictor-00001"
        )

        # An update of the spec is a canary rollout.
        kube.apply(iris(canary=10, storage="gs://kfserving-examples/models/sklearn/2.0/model"))
        eventually(
            lambda: len(kube.get(SERVICES, "default", "iris-predictor")["spec"]["traffic"]) == 2
        )
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive() and not failures
    isvc = kube.get(ISVCS, "default", "iris")
    kopf_keys = [
        key
        for key in isvc["metadata"].get("annotations", {})
        if "kopf" in key or "last-handled" in key
    ]
    assert kopf_keys and all(key.startswith(f"{ANNOTATION_PREFIX}/") for key in kopf_keys)
    assert set(isvc["status"]) <= {
        "observedGeneration",
        "components",
        "conditions",
        "url",
        "address",
        "modelStatus",
    }


@pytest.mark.slow
def test_the_operator_process_runs_as_the_deployment_runs_it(
    kube: KubeClient, kubeconfig: Path, spawn: Any
) -> None:
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    args = ["--all-namespaces", "--standalone", f"--liveness={liveness}"]  # the Deployment's
    operator = spawn(
        [
            sys.executable,
            "-m",
            "knserve.knative.operator",
            *args,
            "--no-posting",
            "--kubeconfig",
            str(kubeconfig),
        ]
    )
    operator.wait_http(liveness)
    kube.apply(iris())
    eventually(lambda: kube.find(SERVICES, "default", "iris-predictor"))
    assert operator.stop() == 0, operator.log()  # SIGTERM: kopf stops cleanly


def test_the_operator_needs_namespaces_or_all_of_them() -> None:
    result = CliRunner().invoke(main, [])
    assert (
        result.exit_code == 2
        and "--namespace NAME (repeatable) or --all-namespaces" in result.output
    )


def test_the_operator_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "knserve.knative.operator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "--all-namespaces" in done.stdout


# ---- the manifests -----------------------------------------------------------------------------

MODELS = {
    "Namespace": k8s.V1Namespace,
    "ServiceAccount": k8s.V1ServiceAccount,
    "ClusterRole": k8s.V1ClusterRole,
    "ClusterRoleBinding": k8s.V1ClusterRoleBinding,
    "Deployment": k8s.V1Deployment,
}


def manifest() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "operator.yaml").read_text()) if d]
    return {doc["kind"]: doc for doc in docs}


def unknown_fields(given: Any, known: Any, path: str = "") -> list[str]:
    """Fields of `given` that the Kubernetes model dropped (`known` is its round trip)."""
    if isinstance(given, dict):
        return [
            f
            for key, value in given.items()
            for f in (
                [f"{path}.{key}"]
                if key not in known
                else unknown_fields(value, known[key], f"{path}.{key}")
            )
        ]
    if isinstance(given, list):
        return [
            f
            for i, (g, k) in enumerate(zip(given, known, strict=True))
            for f in unknown_fields(g, k, f"{path}[{i}]")
        ]
    return []


def test_the_operator_manifest_holds_valid_kubernetes_objects() -> None:
    objects = manifest()
    assert sorted(objects) == sorted(MODELS)
    serialize = k8s.ApiClient().sanitize_for_serialization
    for kind, doc in objects.items():
        model = MODELS[kind].from_dict(doc)  # required fields and types, or a ValidationError
        assert unknown_fields(doc, serialize(model)) == [], kind


def test_the_cluster_role_grants_what_the_operator_does() -> None:
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in manifest()["ClusterRole"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    needed = {
        (ISVCS.group, ISVCS.plural): {"get", "list", "watch", "patch"},
        (ISVCS.group, f"{ISVCS.plural}/status"): {"get", "update"},
        (ISVCS.group, "servingruntimes"): {"list", "watch"},
        (SERVICES.group, SERVICES.plural): {
            "get",
            "list",
            "watch",
            "create",
            "update",
            "patch",
            "delete",
        },
        ("", "events"): {"create"},
        ("", "namespaces"): {"list", "watch"},
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("kopf.dev", "clusterkopfpeerings"): {"list", "watch", "patch"},
    }
    missing = {key: verbs - granted.get(key, set()) for key, verbs in needed.items()}
    assert {key: verbs for key, verbs in missing.items() if verbs} == {}


def test_the_deployment_runs_the_operator_as_the_bound_service_account() -> None:
    objects = manifest()
    binding, deployment = objects["ClusterRoleBinding"], objects["Deployment"]
    account = objects["ServiceAccount"]["metadata"]
    assert binding["roleRef"]["name"] == objects["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == account["name"]
    assert deployment["metadata"]["namespace"] == account["namespace"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "knserve.knative.operator"]
    context = main.make_context("operator", list(container["args"]))  # options it accepts
    assert context.params["all_namespaces"] and context.params["liveness_endpoint"].endswith(
        ":8080/healthz"
    )
    assert container["ports"][0]["containerPort"] == 8080


def test_the_containerfile_installs_the_kube_extra_and_runs_the_operator() -> None:
    lines = [
        line.strip()
        for line in (DEPLOY / "Containerfile.operator").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    assert any(line.startswith("RUN pip install") and "[kube]" in line for line in lines)
    entrypoint = next(line for line in lines if line.startswith("ENTRYPOINT"))
    assert yaml.safe_load(entrypoint.removeprefix("ENTRYPOINT")) == [
        "python",
        "-m",
        "knserve.knative.operator",
    ]
    cmd = yaml.safe_load(next(line for line in lines if line.startswith("CMD")).removeprefix("CMD"))
    main.make_context("operator", cmd)
    root = Path(__file__).parents[2]  # the build context: the repository root
    sources = [part for line in lines if line.startswith("COPY") for part in line.split()[1:-1]]
    assert "knative" in sources and all((root / source).exists() for source in sources), sources


def test_the_crds_the_install_names_are_shipped_with_the_package() -> None:
    header = (DEPLOY / "operator.yaml").read_text()
    named = re.findall(r"crds/(\S+\.yaml)", header)
    assert "serving.kserve.io_inferenceservices.yaml" in named
    for filename in named:
        crd = schema_crd(filename)  # the file schema validation reads, so it is shipped
        assert (
            crd["kind"] == "CustomResourceDefinition"
            and crd["spec"]["group"] == "serving.kserve.io"
        )


def test_the_example_inferenceservice_and_what_it_becomes_are_valid() -> None:
    isvc = yaml.safe_load((DEPLOY / "sklearn-iris.yaml").read_text())
    assert ISVCS.errors(isvc) == []
    isvc["metadata"]["namespace"] = "default"
    for ksvc in knative_services(isvc, merge_runtimes([]), Target(cluster=True)):
        assert SERVICES.errors(ksvc) == []
