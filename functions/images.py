"""Function images on this machine: a reference names a built environment by its digest.

`knserve func build` records `knserve.local/{name}@sha256:{digest}` as the function's image. On
the local plane that reference is resolved here to the argv that runs the function in its
environment, the way a container runtime resolves an image to a root filesystem.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from knserve.functions.errors import FunctionError
from knserve.runtime.cache_home import knserve_cache_dir

REGISTRY = "knserve.local"
_REF = re.compile(r"^knserve\.local/(?P<name>[a-z0-9-]+)@sha256:(?P<digest>[0-9a-f]{64})$")


def functions_home() -> Path:
    """Where built function environments live ($KNSERVE_FUNCTIONS_HOME overrides)."""
    return knserve_cache_dir("functions", "KNSERVE_FUNCTIONS_HOME")


def image_ref(name: str, digest: str) -> str:
    return f"{REGISTRY}/{name}@sha256:{digest}"


def env_dir(digest: str) -> Path:
    return functions_home() / digest[:24]


def manifest(image: str) -> dict | None:
    """The build manifest of a knserve.local image, or None for any other image."""
    match = _REF.match(image)
    if match is None:
        return None
    path = env_dir(match["digest"]) / "manifest.json"
    if not path.is_file():
        raise FunctionError(
            f"image {image} is not built on this machine (no {path}); run `knserve func build` "
            "in the function's folder"
        )
    return json.loads(path.read_text())


def command_for_image(image: str) -> tuple[list[str], Path] | None:
    """The argv and working folder that run a built function; None when `image` is not one."""
    found = manifest(image)
    if found is None:
        return None
    root = env_dir(found["digest"])
    python = root / "venv" / "bin" / "python"
    source = root / "src"
    return [str(python), "-m", "knserve.functions.host", "--path", str(source)], source
