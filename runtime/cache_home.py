"""Where knserve keeps what it builds or downloads once per machine: `$XDG_CACHE_HOME/knserve/NAME`
(`~/.cache/knserve/NAME`), unless the variable that names that one folder is set."""

from __future__ import annotations

import os
from pathlib import Path


def knserve_cache_dir(name: str, override: str | None = None) -> Path:
    """The folder for `name` (models, engines, functions, port-map); `$override` wins when set."""
    explicit = os.environ.get(override) if override else None
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "knserve" / name
