"""TrainedModel's pure rules: the multi-model predictor, KServe's capacity rule, the status and
conditions as KServe writes them, and admission."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.trained_model_validation import parse_quantity
from knserve.knative.kserve.inferenceservice import knative_services
from knserve.knative.kserve.runtimes import builtin_runtimes
from knserve.knative.kserve.trained_model import (
    ALLOCATED_LABEL,
    agent_annotations,
    allocate,
    is_mms_predictor,
    predictor_memory_limit,
    trained_model_status,
)

NOW = "2026-01-01T00:00:00Z"


def isvc(limit: str | None = None, ready: bool = True, **model: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"modelFormat": {"name": "sklearn"}, **model}
    if limit is not None:
        spec["resources"] = {"limits": {"memory": limit}}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "mms", "namespace": "default"},
        "spec": {"predictor": {"model": spec}},
        "status": {
            "url": "http://mms.default.localhost",
            "address": {"url": "http://mms-predictor.default.svc.cluster.local"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def tm(name: str, memory: str = "256Mi", created: str = NOW, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "TrainedModel",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created,
                     "labels": labels},
        "spec": {
            "inferenceService": "mms",
            "model": {"storageUri": f"gs://models/{name}", "framework": "sklearn", "memory": memory},
        },
    }  # fmt: skip


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {c["type"]: (c["status"], c.get("reason")) for c in status["conditions"]}


def test_a_predictor_without_storage_uri_is_multi_model_and_gets_kserves_agent_annotations() -> (
    None
):
    assert is_mms_predictor({"model": {"modelFormat": {"name": "sklearn"}}})
    assert not is_mms_predictor({"sklearn": {"storageUri": "gs://b/m"}})
    assert not is_mms_predictor({"model": {"modelFormat": {"name": "huggingface"}}})
    containers = [{"name": "kserve-container", "image": "x"}]
    assert not is_mms_predictor({"containers": containers})
    env = [{"name": "MULTI_MODEL_SERVER", "value": "true"}]
    assert is_mms_predictor({"containers": [{**containers[0], "env": env}]})
    services = knative_services(isvc(), builtin_runtimes())
    annotations = services[0]["spec"]["template"]["metadata"]["annotations"]
    assert {k: v for k, v in annotations.items() if k.startswith("internal.")} == {
        "internal.serving.kserve.io/agent": "true",
        "internal.serving.kserve.io/configVolumeName": "modelconfig-mms-0",
        "internal.serving.kserve.io/configMountPath": "/mnt/configs",
        "internal.serving.kserve.io/modelDir": "/mnt/models",
    }
    assert agent_annotations("iris", {"sklearn": {"storageUri": "gs://b/m"}}) == {}


def test_quantities_parse_as_kubernetes_reads_them() -> None:
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("1.5Gi") == Decimal(3 * 2**29)
    assert parse_quantity("500M") == 500 * 10**6
    assert parse_quantity("100m") == Decimal("0.1")
    assert parse_quantity(1024) == 1024
    assert parse_quantity("1e3") == 1000
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity("1GB")


def test_the_memory_limit_is_the_predictors_or_kserves_default() -> None:
    assert predictor_memory_limit(isvc("1Gi")) == 2**30
    assert predictor_memory_limit(isvc()) == 2 * 2**30  # KServe's default limit, 2Gi


def test_capacity_allocated_models_stay_and_the_others_fit_in_creation_order() -> None:
    limit = parse_quantity("1Gi")
    models = [
        tm("c", "512Mi", "2026-01-01T00:00:03Z"),
        tm("a", "512Mi", "2026-01-01T00:00:01Z"),
        tm("b", "600Mi", "2026-01-01T00:00:02Z"),
    ]
    assert allocate(models, limit) == {"a": True, "b": False, "c": True}
    # one allocated before (labelled) keeps its place although it came later
    models[2]["metadata"]["labels"][ALLOCATED_LABEL] = "mms"
    assert allocate(models, limit) == {"b": True, "a": False, "c": False}
    # exactly the limit fits, as KServe compares (limit >= sum)
    assert allocate([tm("x", "1Gi")], limit) == {"x": True}


def test_status_has_kserves_url_conditions_and_ready() -> None:
    status = trained_model_status(
        tm("m1"), isvc(), fits=True, formats=["sklearn"], load_failure=None, previous=None, now=NOW
    )
    assert status["url"] == "http://mms.default.localhost/v1/models/m1:predict"
    assert status["address"]["url"] == (
        "http://mms-predictor.default.svc.cluster.local/v1/models/m1:predict"
    )
    assert conditions(status) == {
        "FrameworkSupported": ("True", None),
        "InferenceServiceReady": ("True", None),
        "IsMMSPredictor": ("True", None),
        "MemoryResourceAvailable": ("True", None),
        "Ready": ("True", None),
    }
    assert [c["type"] for c in status["conditions"]] == sorted(conditions(status))
    v2 = trained_model_status(
        tm("m1"), isvc(protocolVersion="v2"), fits=True, formats=None, load_failure=None,
        previous=None, now=NOW,
    )  # fmt: skip
    assert v2["url"] == "http://mms.default.localhost/v2/models/m1/infer"


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ({"fits": False}, "MemoryResourceNotAvailable"),
        ({"formats": ["xgboost"]}, "FrameworkNotSupported"),
        ({"isvc": isvc(ready=False)}, "InferenceServiceNotReady"),
        ({"isvc": isvc(storageUri="gs://b/m")}, "IsNotMMSPredictor"),
        ({"load_failure": "model m1 failed to load: no such bucket"}, "ModelLoadFailed"),
        ({"isvc": None}, "InferenceServiceNotFound"),
    ],
)
def test_not_ready_with_kserves_reason(case: dict[str, Any], reason: str) -> None:
    args: dict[str, Any] = {"fits": True, "formats": ["sklearn"], "load_failure": None}
    args.update(case)
    parent = args.pop("isvc", isvc())
    status = trained_model_status(tm("m1"), parent, previous=None, now=NOW, **args)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert ready["message"]


def test_the_memory_message_names_the_limit() -> None:
    status = trained_model_status(
        tm("m1"), isvc("1Gi"), fits=False, formats=None, load_failure=None, previous=None, now=NOW
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "1Gi" in ready["message"]


def test_transition_times_stay_while_a_condition_keeps_its_status() -> None:
    first = trained_model_status(
        tm("m1"), isvc(), fits=True, formats=None, load_failure=None, previous=None, now=NOW
    )
    later = "2026-01-02T00:00:00Z"
    second = trained_model_status(
        tm("m1"), isvc(), fits=False, formats=None, load_failure=None, previous=first, now=later
    )
    times = {c["type"]: c["lastTransitionTime"] for c in second["conditions"]}
    assert times["FrameworkSupported"] == NOW
    assert times["MemoryResourceAvailable"] == later and times["Ready"] == later


def test_admission_checks_the_schema_and_kserves_webhook_rules() -> None:
    kind = by_name("tm")
    assert kind is not None and kind.kind == "TrainedModel"
    assert kind.errors(tm("m1")) == []
    missing = tm("m1")
    del missing["spec"]["model"]["memory"]
    assert any("memory" in e for e in kind.errors(missing))
    bad = tm("bad.name")
    bad["spec"]["model"]["storageUri"] = "ftp://x/y"
    errors = kind.errors(bad)
    assert any(e.startswith("metadata.name:") for e in errors)
    assert any(e.startswith("spec.model.storageUri:") and "ftp://x/y" in e for e in errors)


def test_export_mounts_the_model_config_of_the_files_trained_models(tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner

    from knserve.knative.cli.export import cli as export_cli

    parent = isvc("1Gi")
    del parent["status"]
    other = tm("other")
    other["spec"]["inferenceService"] = "elsewhere"
    docs = [parent, tm("a", "512Mi"), tm("b", "600Mi"), tm("c", "512Mi"), other]
    path = tmp_path / "mms.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    result = CliRunner().invoke(export_cli, ["-f", str(path), "--target", "kube"])
    assert result.exit_code == 0, result.output
    ksvc, config_map = yaml.safe_load_all(result.output)
    assert config_map["kind"] == "ConfigMap"
    assert config_map["metadata"] == {"name": "modelconfig-mms-0", "namespace": "default"}
    # the capacity rule: a and c fit in 1Gi, b does not; other belongs to another server
    listed = json.loads(config_map["data"]["models.json"])
    assert [e["modelName"] for e in listed] == ["a", "c"]
    assert listed[0]["modelSpec"] == {
        "storageUri": "gs://models/a", "framework": "sklearn", "memory": "512Mi"
    }  # fmt: skip
    template = ksvc["spec"]["template"]["spec"]
    assert template["volumes"] == [
        {"name": "model-config", "configMap": {"name": "modelconfig-mms-0"}}
    ]
    container = template["containers"][0]
    assert container["volumeMounts"] == [
        {"name": "model-config", "mountPath": "/mnt/configs", "readOnly": True}
    ]
    assert {"name": "KNSERVE_MODEL_CONFIG", "value": "/mnt/configs/models.json"} in container["env"]
