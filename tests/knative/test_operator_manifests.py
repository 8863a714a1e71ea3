"""The operator's manifests: valid Kubernetes objects, a ClusterRole that grants what the operator
does, the Deployment and its Containerfile, the CRDs the install names, and the example
InferenceService with the Knative Services it becomes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes.client as k8s
import yaml

import knserve.knative
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.schema_validation import crd as schema_crd
from knserve.knative.kserve.inferenceservice import Target, knative_services
from knserve.knative.kserve.runtimes import merge_runtimes
from knserve.knative.kube.operator import main

SERVICES, ISVCS = by_name("services"), by_name("inferenceservices")
PACKAGE = Path(knserve.knative.__file__).parent
DEPLOY = PACKAGE / "deploy"


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
