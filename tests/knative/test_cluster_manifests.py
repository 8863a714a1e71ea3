"""What goes onto a cluster validates against the real schemas: every kind `knserve export
--target kube` reads and writes against its CRD (Knative's, KServe's, verbatim), a function's
Service and Triggers, and the operator's install (Namespace, RBAC, Deployment and the CRDs it
registers when KServe is not installed) against Kubernetes' own JSON schemas
(kubernetes-validate, strict: unknown fields are errors)."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from knserve.functions.deploy import service_for, triggers_for
from knserve.knative.apiserver.kinds import KINDS
from knserve.knative.apiserver.release_images import release
from knserve.knative.apiserver.schema_validation import CRD_DIR
from knserve.knative.cli.export import cli as export_cli
from knserve.knative.kube.manifests import OPERATOR_MANIFEST, operator_manifests

K8S = "1.30"  # a Kubernetes that Knative 1.16+ and KServe 0.21 support
FILE = """\
apiVersion: serving.kserve.io/v1alpha1
kind: ClusterServingRuntime
metadata: {name: my-sklearn}
spec:
  supportedModelFormats: [{name: sklearn, version: "1", autoSelect: true, priority: 5}]
  protocolVersions: [v1, v2]
  containers:
    - name: kserve-container
      image: ghcr.io/acme/knserve/runtime:1.0
      args: ["--model_name={{.Name}}", --model_dir=/mnt/models]
---
apiVersion: serving.kserve.io/v1alpha1
kind: ServingRuntime
metadata: {name: team-onnx, namespace: default}
spec:
  supportedModelFormats: [{name: onnx, autoSelect: false}]
  containers:
    - name: kserve-container
      image: ghcr.io/acme/knserve/runtime:1.0
      args: ["--model_name={{.Name}}", --model_dir=/mnt/models, --model_format=onnx]
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: iris, namespace: default}
spec:
  predictor:
    minReplicas: 0
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://kfserving-examples/models/sklearn/1.0/model
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: digits, namespace: default}
spec:
  predictor:
    model:
      modelFormat: {name: onnx}
      storageUri: s3://models/digits
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata: {name: mms, namespace: default}
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      resources: {limits: {memory: 1Gi}}
---
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: raw
  namespace: default
  annotations: {serving.kserve.io/deploymentMode: RawDeployment}
spec:
  predictor:
    minReplicas: 1
    maxReplicas: 3
    scaleMetric: cpu
    scaleTarget: 60
    model:
      modelFormat: {name: onnx}
      storageUri: s3://models/raw
---
apiVersion: serving.kserve.io/v1alpha1
kind: TrainedModel
metadata: {name: a, namespace: default}
spec:
  inferenceService: mms
  model: {framework: sklearn, storageUri: gs://models/a, memory: 256Mi}
---
apiVersion: serving.kserve.io/v1alpha1
kind: InferenceGraph
metadata: {name: chain, namespace: default}
spec:
  nodes:
    root:
      routerType: Sequence
      steps:
        - {serviceName: iris}
        - {serviceName: digits, data: $response}
"""
BROKER = {
    "apiVersion": "eventing.knative.dev/v1",
    "kind": "Broker",
    "metadata": {"name": "default", "namespace": "default"},
}


def kind_of(obj: dict[str, Any]):  # the plane's registered kind: its CRD and admission checks
    group = obj["apiVersion"].rpartition("/")[0]
    return next(k for k in KINDS.values() if k.kind == obj["kind"] and k.group == group)


def k8s_errors(obj: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(obj, K8S, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def exported(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(export_cli, list(args))
    assert result.exit_code == 0, result.output
    return [d for d in yaml.safe_load_all(result.output) if d]


def test_every_kind_export_reads_is_valid_against_its_crd() -> None:
    documents = [d for d in yaml.safe_load_all(FILE) if d]
    assert {d["kind"] for d in documents} == {
        "ClusterServingRuntime",
        "ServingRuntime",
        "InferenceService",
        "TrainedModel",
        "InferenceGraph",
    }
    for doc in [*documents, BROKER]:
        assert kind_of(doc).errors(doc) == [], doc["metadata"]["name"]


def test_everything_export_writes_for_a_cluster_validates(tmp_path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(FILE)
    objects = exported("-f", str(path), "--target", "kube", "--registry", "r.io/x", "--tag", "2.0")
    kinds = sorted(f"{o['apiVersion']} {o['kind']}" for o in objects)
    assert kinds == [
        "apps/v1 Deployment",  # raw: KServe's Standard mode
        "autoscaling/v2 HorizontalPodAutoscaler",
        "serving.knative.dev/v1 Service",
        "serving.knative.dev/v1 Service",
        "serving.knative.dev/v1 Service",
        "serving.knative.dev/v1 Service",
        "v1 ConfigMap",  # mms: the multi-model server's model config
        "v1 Service",
    ], kinds
    for obj in objects:
        if "knative.dev" not in obj["apiVersion"]:
            assert k8s_errors(obj) == [], obj["kind"]
        else:
            assert kind_of(obj).errors(obj) == [], obj["metadata"]["name"]
    text = yaml.safe_dump_all(objects)
    assert ":latest" not in text
    images = {
        c["image"] for o in objects if o["kind"] in ("Service", "Deployment")
        for c in (o["spec"].get("template") or {"spec": {}})["spec"].get("containers") or []
    }  # fmt: skip
    assert "r.io/x/knserve/runtime:2.0" in images  # digits: knserve-onnxruntime
    assert "ghcr.io/acme/knserve/runtime:1.0" in images  # the file's runtime wins sklearn
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "r.io/x/knserve/runtime:2.0"


def test_knserves_own_runtimes_validate_and_name_the_release_image() -> None:
    objects = exported("--runtimes", "--registry", "r.io/x", "--tag", "2.0")
    assert [o["metadata"]["name"] for o in objects] == [
        "knserve-onnxruntime",
        "knserve-pytorch",
        "knserve-custom",
    ]
    for obj in objects:
        assert kind_of(obj).errors(obj) == [], obj["metadata"]["name"]
        assert [c["image"] for c in obj["spec"]["containers"]] == ["r.io/x/knserve/runtime:2.0"]


def test_a_functions_service_and_triggers_validate() -> None:
    spec = {
        "name": "hello",
        "image": "r.io/x/hello:1",
        "deploy": {
            "options": {"scale": {"min": 0, "max": 3}},
            "subscriptions": [{"source": "default", "filters": {"type": "dev.example"}}],
        },
    }
    service = service_for(spec)
    assert kind_of(service).errors(service) == []
    (trigger,) = triggers_for(
        spec, owner={**service, "metadata": {**service["metadata"], "uid": "u"}}
    )
    assert kind_of(trigger).errors(trigger) == []


def test_the_operators_install_validates_against_kubernetes_schemas() -> None:
    objects = exported("--operator", "--registry", "r.io/x", "--tag", "2.0")
    assert sorted(o["kind"] for o in objects) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Namespace",
        "ServiceAccount",
    ]
    assert objects == operator_manifests(release("r.io/x", "2.0"))
    for obj in objects:
        assert k8s_errors(obj) == [], obj["kind"]
    broken = next(o for o in objects if o["kind"] == "Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    assert k8s_errors(broken) != []  # the validator does look


@pytest.mark.parametrize("filename", sorted(p.name for p in CRD_DIR.glob("*.yaml")))
def test_the_crds_the_install_registers_validate(filename: str) -> None:
    docs = [d for d in yaml.safe_load_all((CRD_DIR / filename).read_text()) if d]
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert crds and all(k8s_errors(d) == [] for d in crds), filename
    if filename.startswith("serving.kserve.io_"):
        assert f"crds/{filename}" in OPERATOR_MANIFEST.read_text() or "trainedmodels" in filename
