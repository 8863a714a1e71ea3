"""For the kopf operator's tests: the InferenceService they apply and what Knative Serving would
write on a cluster where no Knative controller runs.

- `iris` is KServe's sklearn example (optionally a canary, another model, a transformer).
- `knative_marks_ready` creates the Revision and writes the Knative Service's ready status, as
  Serving does once a revision is up (retried on a Conflict, as a controller does).
- `conditions` reads an object's conditions as {type: status}.

The loopback Kubernetes-API server (`switchboard`, `kubeconfig`) and its client (`kube`) are
fixtures in tests/knative/conftest.py.
"""

from __future__ import annotations

from typing import Any

from knserve.knative.apiserver.errors import Conflict
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.kube.client import KubeClient

SERVICES, ISVCS, REVISIONS = by_name("services"), by_name("inferenceservices"), by_name("revisions")
RUNTIMES = by_name("servingruntimes")


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
