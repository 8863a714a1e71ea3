"""`knserve up --example`: KServe's sklearn iris InferenceService, ready to call at once.

The model is trained on first use (scikit-learn's bundled iris data, no download) and applied as
an InferenceService like the one in KServe's quick start; once it is Ready the plane prints the
curl commands that call it through the gateway.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from knserve.knative.apiserver.kinds import named
from knserve.knative.apiserver.store import Store
from knserve.runtime.example import curl_lines, example_model_dir

NAME = "sklearn-iris"
ISVC = named("inferenceservices")


def example_inferenceservice(model_dir: Path) -> dict[str, Any]:
    """KServe's `sklearn-iris` example, with a local storageUri."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": "default"},
        "spec": {
            "predictor": {
                "model": {"modelFormat": {"name": "sklearn"}, "storageUri": f"file://{model_dir}"}
            }
        },
    }


async def serve_example(store: Store, gateway_url: str, domain: str, data_dir: Path) -> None:
    """Apply the example (unless it exists) and print how to call it once it is Ready."""
    if store.find(ISVC, "default", NAME) is None:
        store.create(ISVC, example_inferenceservice(example_model_dir(data_dir)))
    events = store.watch()
    try:
        while True:
            isvc = store.find(ISVC, "default", NAME)
            if isvc is None:
                return
            conditions = (isvc.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                break
            await events.get()
    finally:
        store.unwatch(events)
    host = f"{NAME}.default.{domain}"
    print(
        f"\nThe example InferenceService {NAME} is ready at http://{host}. Call it with:\n",
        flush=True,
    )
    print(curl_lines(gateway_url, NAME, host) + "\n", flush=True)
