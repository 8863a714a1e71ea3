"""KServe's multi-model config: the TrainedModels one model server holds.

KServe's TrainedModel controller keeps, per InferenceService, the ConfigMap
`modelconfig-{isvc}-0` whose `models.json` lists each TrainedModel as
`{"modelName": …, "modelSpec": {"storageUri": …, "framework": …, "memory": …}}`; its agent
sidecar reads that file when the pod starts, loads every model before the pod serves, and later
loads and unloads models through the server's repository extension as the file changes.

knserve's runtime reads the same file (`--model-config`, or `$KNSERVE_MODEL_CONFIG`, which the
local plane sets): its models are loaded at start before the server reports ready, and a
repository load (`POST /v2/repository/models/{name}/load`) of a name the server does not hold
yet finds the model here, as Triton's finds it in its repository folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from knserve.runtime.settings import ModelSpec


class ModelConfigError(ValueError):
    """The model config file is not KServe's `models.json` shape; the message says where."""


def parse_model_config(data: Any, source: str = "models.json") -> dict[str, ModelSpec]:
    """The models of a decoded `models.json` by name (its entries in order)."""
    if not isinstance(data, list):
        raise ModelConfigError(
            f"{source} must hold a JSON list of models, not {type(data).__name__}"
        )
    specs: dict[str, ModelSpec] = {}
    for index, entry in enumerate(data):
        where = f"{source} entry {index}"
        if not isinstance(entry, dict):
            raise ModelConfigError(f"{where} must be an object with modelName and modelSpec")
        name, spec = entry.get("modelName"), entry.get("modelSpec")
        if not isinstance(name, str) or not name:
            raise ModelConfigError(f"{where} has no modelName")
        if not isinstance(spec, dict) or not isinstance(spec.get("storageUri"), str):
            raise ModelConfigError(f"{where} ({name}) has no modelSpec.storageUri")
        framework = spec.get("framework")
        specs[name] = ModelSpec(name, spec["storageUri"], framework or None)
    return specs


def read_model_config(path: str | Path) -> dict[str, ModelSpec]:
    """The models `path` lists; an absent file lists none (the ConfigMap starts empty)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ModelConfigError(f"{path} is not JSON: {exc}") from None
    return parse_model_config(data, str(path))


def model_config_entry(name: str, storage_uri: str, framework: str, memory: str) -> dict[str, Any]:
    """One `models.json` entry, as KServe's modelconfig reconciler writes it."""
    return {
        "modelName": name,
        "modelSpec": {"storageUri": storage_uri, "framework": framework, "memory": memory},
    }
