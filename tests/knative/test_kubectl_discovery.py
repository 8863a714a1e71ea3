"""The real kubectl finds the plane's kinds, version and schemas as on a cluster with the CRDs."""

from __future__ import annotations

import json

import httpx
import yaml
from kubectl_fixtures import Kubectl

from knserve.knative.apiserver.discovery import crd_names
from knserve.knative.apiserver.kinds import KINDS, by_name
from knserve.knative.apiserver.store import Store

HELLO = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "hello"},
    "spec": {"template": {"spec": {"containers": [{"image": "python"}]}}},
}


def test_version_names_the_kubernetes_api_it_follows(kubectl_api: tuple[Kubectl, Store]) -> None:
    kubectl, _ = kubectl_api
    shown = json.loads(kubectl.run("version", "-o", "json").stdout)
    server = shown["serverVersion"]
    assert (server["major"], server["minor"]) == ("1", "32")
    assert server["gitVersion"].startswith("v1.32.0+knserve-")
    # no skew warning: the server is within one minor version of this kubectl
    assert "WARNING" not in kubectl.run("version").stderr


def test_api_resources_carry_the_crds_names_and_categories(
    kubectl_api: tuple[Kubectl, Store],
) -> None:
    kubectl, _ = kubectl_api
    listed = kubectl.run("api-resources", "-o", "wide", "--no-headers").stdout.splitlines()
    by_name = {line.split()[0]: line for line in listed}
    for kind in KINDS.values():
        names = crd_names(kind)
        line = by_name[kind.plural]
        assert kind.kind in line and f"{kind.group}/{kind.version}" in line
        for short in names.get("shortNames") or []:
            assert short in line, (short, line)
        for category in names.get("categories") or []:
            assert category in line, (category, line)
    assert "delete,deletecollection,get,list,patch,update,watch" in by_name["services"]
    # a category reaches every kind in it, as `kubectl get knative` does on a cluster
    kubectl.apply(HELLO)
    assert "service.serving.knative.dev/hello" in kubectl.run("get", "serving", "-o", "name").stdout


def test_explain_reads_the_crd_schema(kubectl_api: tuple[Kubectl, Store]) -> None:
    kubectl, _ = kubectl_api
    shown = kubectl.run("explain", "ksvc.spec.template").stdout
    assert "KIND:       Service" in shown and "FIELD: template <Object>" in shown
    assert "Template holds the latest specification for the Revision" in shown
    deep = kubectl.run("explain", "isvc.spec.predictor.model.storageUri").stdout
    assert "InferenceService" in deep and "storageUri" in deep
    assert "name\t<string>" in kubectl.run("explain", "ksvc.metadata").stdout
    missing = kubectl.run("explain", "ksvc.spec.nosuchfield", check=False)
    assert missing.returncode != 0 and "nosuchfield" in missing.stderr


def test_apply_validates_against_the_schema_without_validate_false(
    kubectl_api: tuple[Kubectl, Store],
) -> None:
    kubectl, store = kubectl_api
    assert "service.serving.knative.dev/hello created" in kubectl.apply(HELLO)
    typo = {**HELLO, "spec": {"template": {"spec": {"containerz": [{"image": "python"}]}}}}
    refused = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(typo), check=False)
    assert refused.returncode != 0
    assert "spec.template.spec: unknown field(s) containerz" in refused.stderr
    stored = store.get(by_name("ksvc"), "default", "hello")  # type: ignore[arg-type]
    assert stored["spec"]["template"]["spec"]["containers"] == [{"image": "python"}]


def test_openapi_documents_are_generated_from_the_crds(
    kubectl_api: tuple[Kubectl, Store],
) -> None:
    kubectl, _ = kubectl_api
    server = yaml.safe_load(kubectl.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    with httpx.Client(base_url=server, trust_env=False) as http:
        root = http.get("/openapi/v3").json()["paths"]
        url = root["apis/serving.kserve.io/v1beta1"]["serverRelativeURL"]
        doc = http.get(url).json()
        isvc = doc["components"]["schemas"]["io.kserve.serving.v1beta1.InferenceService"]
        assert isvc["x-kubernetes-group-version-kind"] == [
            {"group": "serving.kserve.io", "version": "v1beta1", "kind": "InferenceService"}
        ]
        assert "predictor" in isvc["properties"]["spec"]["properties"]
        v2 = http.get("/openapi/v2").json()
        assert v2["swagger"] == "2.0"
        assert "dev.knative.eventing.v1.Trigger" in v2["definitions"]
        proto = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
        assert http.get("/openapi/v2", headers={"Accept": proto}).status_code == 406
        unknown = http.get("/openapi/v3/apis/nosuch.dev/v1")
        assert unknown.status_code == 404 and "serving.knative.dev/v1" in unknown.json()["message"]
