"""`func.yaml`, validated against Knative func's own JSON schema exactly as func ships it.

The schema allows no keys of its own (no `template:`), so what knserve needs lives in the keys it
has: `invoke` (http or cloudevent) tells the host how to call the handler, `image` records the
built environment, `run.envs` are the function's environment, `deploy.annotations` and
`deploy.options.scale` become autoscaling annotations, `deploy.subscriptions` become Triggers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, FormatChecker

from knserve.functions.errors import FunctionError

FILENAME = "func.yaml"
SPEC_VERSION = "4.43.0"
SCHEMA_PATH = Path(__file__).with_name("func_yaml-schema.json")


@cache
def _validator() -> Draft4Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    return Draft4Validator(schema, format_checker=FormatChecker())


def validate(data: Any, source: str = FILENAME) -> None:
    """Raise FunctionError naming every field that breaks func's schema, and why."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    lines = []
    for error in errors:
        field = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        lines.append(f"  {field}: {error.message}")
    raise FunctionError(f"{source} does not match Knative func's schema:\n" + "\n".join(lines))


def load(folder: Path) -> dict[str, Any]:
    """The validated func.yaml of the function in `folder`."""
    path = Path(folder) / FILENAME
    if not path.is_file():
        raise FunctionError(
            f"no {FILENAME} in {folder}: create a function with `knserve func create` or pass --path"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise FunctionError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise FunctionError(f"{path} must hold a mapping (name, runtime, …)")
    validate(data, str(path))
    return data


def save(folder: Path, data: dict[str, Any]) -> None:
    validate(data)
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    (Path(folder) / FILENAME).write_text(text)


def new(name: str, invoke: str, envs: dict[str, str] | None = None) -> dict[str, Any]:
    """A fresh func.yaml for a Python function."""
    data: dict[str, Any] = {
        "specVersion": SPEC_VERSION,
        "name": name,
        "runtime": "python",
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "invoke": invoke,
        "run": {"envs": [{"name": k, "value": v} for k, v in (envs or {}).items()]},
        "deploy": {
            "namespace": "default",
            "healthEndpoints": {"liveness": "/health/liveness", "readiness": "/health/readiness"},
        },
    }
    validate(data)
    return data


def envs(data: dict[str, Any]) -> dict[str, str]:
    """`run.envs` as a mapping (later entries win)."""
    return {e["name"]: e.get("value", "") for e in (data.get("run") or {}).get("envs") or []}
