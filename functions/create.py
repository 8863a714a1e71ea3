"""`knserve func create`: a new function from a template, all or nothing.

The function is rendered into a temporary folder beside its destination and moved into place only
when everything (files, func.yaml, the template's setup) succeeded, so a failure leaves nothing
half-written behind.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from knserve.functions import templates
from knserve.functions.errors import FunctionError

# Kubernetes' DNS-1123 label: a function's name becomes its Knative Service's name.
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_name(name: str) -> None:
    if len(name) > 63 or not DNS1123_LABEL.match(name):
        raise FunctionError(
            f"function name {name!r} is not a DNS-1123 label: use at most 63 lowercase letters, digits "
            "and '-', starting and ending with a letter or digit (for example 'iris-predictor')"
        )


def create_function(
    name: str, template: str = "http", path: Path | None = None, language: str = "python"
) -> Path:
    """Render `template` as function `name` into `path` (default ./NAME); returns the folder."""
    check_name(name)
    if language not in templates.LANGUAGES:
        raise FunctionError(
            f"unknown language {language!r}; knserve functions are written in: {', '.join(templates.LANGUAGES)}"
        )
    chosen = templates.get(template)
    dest = Path(path) if path is not None else Path.cwd() / name
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FunctionError(
            f"{dest} already exists and is not empty: choose another --path or name"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        build = staging / name
        templates.render(chosen, name, build)
        if dest.exists():
            dest.rmdir()  # an empty folder the user made for it
        build.rename(dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest
