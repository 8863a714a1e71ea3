"""The built-in ClusterServingRuntimes installed in the local plane's store, as KServe's install
(or upgrade) applies its stock runtimes: `kubectl get clusterservingruntimes` lists them, a user
may change or disable one, and a newer knserve brings the ones nobody changed up to date."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from knserve.knative.apiserver.kinds import named
from knserve.knative.apiserver.store import Store
from knserve.knative.kserve.runtimes import builtin_runtimes

CLUSTER_SERVING_RUNTIME = named("clusterservingruntimes")
# On a built-in ClusterServingRuntime the plane installed: the digest of the spec it installed.
BUILTIN_ANNOTATION = "knserve.dev/builtin-spec"


def install_builtin_runtimes(store: Store) -> list[str]:
    """Install the built-in ClusterServingRuntimes as installing (or upgrading) KServe applies its
    stock ones, so the API lists them: create those the store lacks and bring up to date those
    still as knserve installed them (the `BUILTIN_ANNOTATION` digest of their spec); one a user
    changed is left as it is. Selection falls back on the built-ins anyway (`merge_runtimes`).
    Returns the names created or updated."""
    changed = []
    for runtime in builtin_runtimes():
        name = runtime["metadata"]["name"]
        digest = spec_digest(runtime["spec"])
        annotations = runtime["metadata"].setdefault("annotations", {})
        annotations[BUILTIN_ANNOTATION] = digest
        current = store.find(CLUSTER_SERVING_RUNTIME, "", name)
        if current is None:
            store.create(CLUSTER_SERVING_RUNTIME, runtime, validate=False)
        else:
            installed = (current["metadata"].get("annotations") or {}).get(BUILTIN_ANNOTATION)
            if installed != spec_digest(current.get("spec") or {}) or installed == digest:
                continue  # the user's own, or already this version's
            current["spec"] = runtime["spec"]
            current["metadata"]["annotations"] = {
                **(current["metadata"].get("annotations") or {}),
                BUILTIN_ANNOTATION: digest,
            }
            store.replace(CLUSTER_SERVING_RUNTIME, current, validate=False)
        changed.append(name)
    return changed


def spec_digest(spec: Mapping[str, Any]) -> str:
    """A short digest of a runtime's spec, to tell a built-in as installed from one changed."""
    encoded = json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]
