"""InferenceService autoscaling: the user's class kept, scaleMetric cpu|memory with the HPA, and
RawDeployment (KServe's Standard mode) run locally on the HPA and exported as KServe makes it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from knserve.knative.apiserver.isvc_validation import inference_service_errors
from knserve.knative.cli.export import cli as export_cli
from knserve.knative.kserve.inferenceservice import (
    InvalidInferenceService,
    Target,
    knative_services,
)
from knserve.knative.kserve.runtimes import builtin_runtimes

A = "autoscaling.knative.dev/"
HPA_CLASS = {A + "class": "hpa.autoscaling.knative.dev"}
RAW = {"serving.kserve.io/deploymentMode": "RawDeployment"}
MEMORY = {"requests": {"memory": "512Mi"}}  # over the stock runtime's 2Gi
IRIS: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "iris", "namespace": "default"},
    "spec": {
        "predictor": {
            "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://bucket/iris"}
        }
    },
}


def isvc(meta_annotations: dict[str, str] | None = None, **predictor: Any) -> dict[str, Any]:
    obj = copy.deepcopy(IRIS)
    obj["metadata"]["annotations"] = dict(meta_annotations or {})
    obj["spec"]["predictor"].update(predictor)
    return obj


def template_annotations(obj: dict[str, Any], target: Target | None = None) -> dict[str, str]:
    (ksvc,) = knative_services(obj, builtin_runtimes(), *([target] if target else []))
    return dict(ksvc["spec"]["template"]["metadata"]["annotations"])


def test_the_users_class_is_kept_for_the_plane_and_for_a_cluster() -> None:
    obj = isvc(HPA_CLASS, scaleMetric="cpu", scaleTarget=60, maxReplicas=3)
    for target in (None, Target(cluster=True)):
        seen = template_annotations(obj, target)
        assert seen[A + "class"] == "hpa.autoscaling.knative.dev"
        assert (seen[A + "metric"], seen[A + "target"]) == ("cpu", "60")
        assert (seen[A + "min-scale"], seen[A + "max-scale"]) == ("1", "3")
    # a class on the component's own annotations is kept too; without one, KServe's KPA
    component = isvc(None, annotations=dict(HPA_CLASS))
    assert template_annotations(component)[A + "class"] == "hpa.autoscaling.knative.dev"
    assert template_annotations(isvc())[A + "class"] == "kpa.autoscaling.knative.dev"


def test_scale_metric_cpu_without_the_hpa_says_how_to_get_it() -> None:
    errors = inference_service_errors(isvc(scaleMetric="cpu"))
    assert errors == [
        "spec.predictor.scaleMetric: [cpu] is not a supported metric (Knative's autoscaler "
        "scales on concurrency or rps; for cpu or memory set the annotation "
        "autoscaling.knative.dev/class: hpa.autoscaling.knative.dev, or "
        "serving.kserve.io/deploymentMode: RawDeployment)"
    ]
    assert inference_service_errors(isvc(HPA_CLASS, scaleMetric="cpu")) == []
    assert inference_service_errors(isvc(RAW, scaleMetric="memory", scaleTarget=50)) == []


@pytest.mark.parametrize(
    ("predictor", "expected"),
    [
        # KServe's HPA: min at least 1, max never below min, cpu 80 % by default
        ({}, {"min-scale": "1", "max-scale": "1", "metric": "cpu", "target": "80"}),
        (
            {"minReplicas": 0, "maxReplicas": 4, "scaleTarget": 50},
            {"min-scale": "1", "max-scale": "4", "metric": "cpu", "target": "50"},
        ),
        (
            {
                "minReplicas": 2,
                "maxReplicas": 5,
                "scaleMetric": "memory",
                "scaleTarget": 50,
                "model": {**IRIS["spec"]["predictor"]["model"], "resources": MEMORY},
            },
            # 50 % of a 512 MiB request: 256 MiB per replica
            {"min-scale": "2", "max-scale": "5", "metric": "memory", "target": "256"},
        ),
        (
            # memory without a target: Kubernetes' default metric, 80 % CPU
            {"maxReplicas": 3, "scaleMetric": "memory"},
            {"min-scale": "1", "max-scale": "3", "metric": "cpu", "target": "80"},
        ),
    ],
)
def test_raw_deployment_runs_on_the_hpa_locally(
    predictor: dict[str, Any], expected: dict[str, str]
) -> None:
    seen = template_annotations(isvc(RAW, **predictor))
    assert seen[A + "class"] == "hpa.autoscaling.knative.dev"
    assert {k: seen[A + k] for k in expected} == expected


def test_raw_deployment_with_autoscaler_class_none_keeps_min_replicas() -> None:
    seen = template_annotations(
        isvc({**RAW, "serving.kserve.io/autoscalerClass": "none"}, minReplicas=2, maxReplicas=6)
    )
    assert (seen[A + "min-scale"], seen[A + "max-scale"]) == ("2", "2")


def test_raw_deployment_refuses_what_it_would_silently_skip() -> None:
    assert inference_service_errors(isvc(RAW, canaryTrafficPercent=20)) == [
        "spec.predictor.canaryTrafficPercent: RawDeployment mode has no revisions to split "
        "traffic between (KServe ignores it there); remove it, or use the Serverless mode for a "
        "canary"
    ]
    keda = inference_service_errors(isvc({**RAW, "serving.kserve.io/autoscalerClass": "keda"}))
    assert keda and "[keda] needs KEDA on a cluster" in keda[0]
    assert inference_service_errors(isvc({"serving.kserve.io/deploymentMode": "ModelMesh"})) == [
        "metadata.annotations[serving.kserve.io/deploymentMode]: [ModelMesh] is not a deployment "
        "mode knserve runs (use Serverless or RawDeployment; ModelMesh is not supported)"
    ]
    # raw mode's HPA takes cpu or memory only (KServe would fall back to 80 % CPU silently)
    assert (
        "not a supported metric"
        in inference_service_errors(isvc(RAW, scaleMetric="concurrency"))[0]
    )
    custom = isvc(RAW, scaleMetric="memory", scaleTarget=50)
    del custom["spec"]["predictor"]["model"]
    custom["spec"]["predictor"]["containers"] = [{"name": "kserve-container", "image": "me/m:1"}]
    with pytest.raises(InvalidInferenceService, match="resources.requests.memory"):
        knative_services(custom, builtin_runtimes())


def test_raw_deployment_exports_a_deployment_a_service_and_an_hpa(tmp_path: Path) -> None:
    obj = isvc({**RAW, "team": "ml"}, minReplicas=2, maxReplicas=5, scaleTarget=60)
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(obj))
    result = CliRunner().invoke(export_cli, ["-f", str(path), "--target", "kube"])
    assert result.exit_code == 0, result.output
    deployment, service, hpa = yaml.safe_load_all(result.output)
    assert [(o["apiVersion"], o["kind"]) for o in (deployment, service, hpa)] == [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ]
    assert {o["metadata"]["name"] for o in (deployment, service, hpa)} == {"iris-predictor"}
    app = {"app": "isvc.iris-predictor"}
    assert deployment["spec"]["selector"]["matchLabels"] == app
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == "isvc.iris-predictor"
    assert "replicas" not in deployment["spec"]  # the HPA owns the count
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["name"] == "kserve-container"
    assert "containerConcurrency" not in pod  # a Knative field: no queue-proxy in raw mode
    kept = deployment["spec"]["template"]["metadata"]["annotations"]
    assert kept["internal.serving.kserve.io/storage-initializer-sourceuri"] == "gs://bucket/iris"
    assert not [k for k in kept if k.startswith(A)]
    assert service["spec"]["selector"] == app
    assert service["spec"]["ports"][0]["port"] == 80
    assert hpa["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris-predictor"},
        "minReplicas": 2,
        "maxReplicas": 5,
        "metrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 60},
                },
            }
        ],
        "behavior": {},
    }
    # autoscalerClass none: no HPA, the Deployment keeps minReplicas
    obj["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] = "none"
    path.write_text(yaml.safe_dump(obj))
    result = CliRunner().invoke(export_cli, ["-f", str(path), "--target", "kube"])
    assert result.exit_code == 0, result.output
    kinds = [(o["kind"], o["spec"].get("replicas")) for o in yaml.safe_load_all(result.output)]
    assert kinds == [("Deployment", 2), ("Service", None)]
