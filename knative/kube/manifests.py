"""The operator's install manifests (knative/deploy/operator.yaml) for one release's images.

`knserve export --operator --registry R --tag T` prints them: the Namespace, ServiceAccount,
RBAC and Deployment of operator.yaml, with the Deployment's image set to the release's operator
image and `KNSERVE_REGISTRY`/`KNSERVE_TAG` in its environment, so the InferenceServices it
reconciles onto knserve's runtimes name the runtime image of the same release.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from knserve.knative.apiserver.release_images import OPERATOR, REGISTRY_ENV, TAG_ENV, Release

DEPLOY_DIR = Path(__file__).parents[1] / "deploy"
OPERATOR_MANIFEST = DEPLOY_DIR / "operator.yaml"
OPERATOR_CONTAINER = "operator"


def operator_manifests(rel: Release) -> list[dict[str, Any]]:
    """operator.yaml's objects, its Deployment naming `rel`'s images."""
    docs = [d for d in yaml.safe_load_all(OPERATOR_MANIFEST.read_text()) if d]
    for doc in docs:
        if doc["kind"] != "Deployment":
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            if container["name"] != OPERATOR_CONTAINER:
                continue
            container["image"] = rel.image(OPERATOR)
            env = [
                e for e in container.get("env") or [] if e["name"] not in (REGISTRY_ENV, TAG_ENV)
            ]
            container["env"] = [
                *env,
                {"name": REGISTRY_ENV, "value": rel.registry},
                {"name": TAG_ENV, "value": rel.tag},
            ]
    return docs
