"""The data plane inside one revision: a KServe-compatible model server.

    from knserve.runtime import Model, serve

    class Doubler(Model):
        def predict(self, payload, headers=None):
            return [2 * x for x in payload["instances"]]

    serve([Doubler("doubler")])

Models are served over KServe's V1 protocol, the V2 Open Inference Protocol (with Triton's binary
tensor extension and the model repository extension) and CloudEvents; framework models load from
a folder (`python -m knserve.runtime --model-name NAME --model-dir DIR`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "InferInput",
    "InferOutput",
    "InferRequest",
    "InferResponse",
    "InferenceError",
    "InvalidInput",
    "Model",
    "RuntimeSettings",
    "create_app",
    "serve",
]

if TYPE_CHECKING:
    from knserve.runtime.app import create_app
    from knserve.runtime.errors import InferenceError, InvalidInput
    from knserve.runtime.model import Model
    from knserve.runtime.protocols.v2 import InferInput, InferOutput, InferRequest, InferResponse
    from knserve.runtime.server import serve
    from knserve.runtime.settings import RuntimeSettings

# Imported on first use, so `import knserve.runtime` (every revision pays it) stays cheap.
_WHERE = {
    "Model": "knserve.runtime.model",
    "serve": "knserve.runtime.server",
    "create_app": "knserve.runtime.app",
    "RuntimeSettings": "knserve.runtime.settings",
    "InferenceError": "knserve.runtime.errors",
    "InvalidInput": "knserve.runtime.errors",
    "InferInput": "knserve.runtime.protocols.v2",
    "InferOutput": "knserve.runtime.protocols.v2",
    "InferRequest": "knserve.runtime.protocols.v2",
    "InferResponse": "knserve.runtime.protocols.v2",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'knserve.runtime' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
