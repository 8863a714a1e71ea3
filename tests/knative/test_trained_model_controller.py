"""The TrainedModel controller against a real store, without replicas: the model config file it
keeps, the labels and statuses it writes, the replicas' environment, and KServe's deletion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from knserve.knative.apiserver.kinds import named
from knserve.knative.apiserver.store import Event, Store
from knserve.knative.kserve.trained_model_controller import TrainedModelController
from knserve.knative.supervisor.replicas import RevisionProcessSpec, Supervisor

TM, ISVC = named("trainedmodels"), named("inferenceservices")


def isvc(limit: str = "1Gi", **model: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "mms", "namespace": "default"},
        "spec": {
            "predictor": {
                "model": {
                    "modelFormat": {"name": "sklearn"},
                    "resources": {"limits": {"memory": limit}},
                    **model,
                }
            }
        },
    }


def tm(name: str, memory: str, framework: str = "sklearn") -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "TrainedModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "inferenceService": "mms",
            "model": {"storageUri": f"gs://m/{name}", "framework": framework, "memory": memory},
        },
    }


def ready_reason(store: Store, name: str) -> str | None:
    found = store.get(TM, "default", name)
    ready = next(c for c in found["status"]["conditions"] if c["type"] == "Ready")
    return None if ready["status"] == "True" else ready["reason"]


async def test_the_config_file_labels_and_statuses(tmp_path: Path, store: Store) -> None:
    controller = TrainedModelController(store, Supervisor(tmp_path / "logs"), tmp_path / "cfg")
    parent = store.create(ISVC, isvc())
    for obj in (tm("a", "512Mi"), tm("b", "600Mi"), tm("c", "256Mi"), tm("x", "1Mi", "onnx")):
        store.create(TM, obj)
    await controller.reconcile("default", "mms")
    # the InferenceService is not ready: nothing enters the config yet, every model says why
    path = tmp_path / "cfg" / "default" / "modelconfig-mms-0" / "models.json"
    assert json.loads(path.read_text()) == []
    assert ready_reason(store, "a") == "InferenceServiceNotReady"

    ready = {"url": "http://mms.default.localhost", "conditions": [
        {"type": "Ready", "status": "True"}]}  # fmt: skip
    store.write_status(ISVC, parent, ready)
    await controller.reconcile("default", "mms")
    listed = json.loads(path.read_text())
    assert [e["modelName"] for e in listed] == ["a", "c"]
    assert listed[0]["modelSpec"] == {"storageUri": "gs://m/a", "framework": "sklearn",
                                      "memory": "512Mi"}  # fmt: skip
    assert ready_reason(store, "a") is None and ready_reason(store, "c") is None
    assert ready_reason(store, "b") == "MemoryResourceNotAvailable"
    assert ready_reason(store, "x") == "FrameworkNotSupported"
    labels = store.get(TM, "default", "a")["metadata"]["labels"]
    assert labels == {"inferenceservice": "mms", "serving.kserve.io/trainedmodel-allocated": "mms"}
    assert (
        "serving.kserve.io/trainedmodel-allocated"
        not in (store.get(TM, "default", "b")["metadata"]["labels"])
    )
    assert store.get(TM, "default", "a")["status"]["url"] == (
        "http://mms.default.localhost/v1/models/a:predict"
    )

    # deleting a TrainedModel takes it out of the config, and frees its memory for b
    store.delete(TM, "default", "a")
    await controller.reconcile("default", "mms")
    assert [e["modelName"] for e in json.loads(path.read_text())] == ["b", "c"]
    assert ready_reason(store, "b") is None

    # deleting the InferenceService deletes its TrainedModels, as KServe's controller does
    deleted = store.delete(ISVC, "default", "mms")
    await controller._handle(Event("DELETED", ISVC, deleted))
    assert store.list(TM, "default") == []
    assert not path.exists()


def test_only_multi_model_revisions_get_the_model_config(tmp_path: Path, store: Store) -> None:
    controller = TrainedModelController(store, Supervisor(tmp_path / "logs"), tmp_path / "cfg")
    container = {"name": "kserve-container", "image": "kserve/sklearnserver", "env": []}
    plain = RevisionProcessSpec("default", "iris", "iris", "iris-00001", container)
    assert controller.replica_spec(plain) is plain
    annotations = {
        "internal.serving.kserve.io/agent": "true",
        "internal.serving.kserve.io/configVolumeName": "modelconfig-mms-0",
    }
    mms = RevisionProcessSpec(
        "ml", "mms-predictor", "mms-predictor", "mms-predictor-00001", container,
        annotations=annotations,
    )  # fmt: skip
    env = controller.replica_spec(mms).container["env"]
    path = tmp_path / "cfg" / "ml" / "modelconfig-mms-0" / "models.json"
    assert env == [{"name": "KNSERVE_MODEL_CONFIG", "value": str(path)}]
    assert container["env"] == []  # the revision's own spec is left as it is
