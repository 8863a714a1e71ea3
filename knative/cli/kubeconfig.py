"""The kubeconfig context `knserve up` writes, so kubectl and client libraries find the plane.

As `kind create cluster` does, the plane's cluster, user and context (all named `knserve`) are
merged into the first file of `$KUBECONFIG` (else `~/.kube/config`), replacing only entries of
that name; the current context is set only when the file has none, so a user's cluster stays
the default and `kubectl --context knserve …` reaches the plane.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

CONTEXT = "knserve"


def kubeconfig_path() -> Path:
    """Where kubectl writes new entries: the first file of $KUBECONFIG, else ~/.kube/config."""
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return Path(listed[0]).expanduser() if listed else Path.home() / ".kube" / "config"


def _upsert(entries: list[dict[str, Any]], name: str, key: str, value: dict[str, Any]) -> list[Any]:
    kept = [e for e in entries if isinstance(e, dict) and e.get("name") != name]
    return [*kept, {"name": name, key: value}]


def write_context(server: str, token: str | None, path: Path | None = None) -> Path:
    """Merge the `knserve` context for the control API at `server` into the kubeconfig; returns
    the file written. A file that is not a kubeconfig is an error naming it, never overwritten."""
    target = path or kubeconfig_path()
    config: dict[str, Any] = {}
    if target.exists():
        try:
            loaded = yaml.safe_load(target.read_text()) or {}
        except yaml.YAMLError:
            loaded = None
        if not isinstance(loaded, dict):
            raise ValueError(f"{target} is not a kubeconfig (a YAML mapping); fix or move it")
        config = loaded
    config.setdefault("apiVersion", "v1")
    config.setdefault("kind", "Config")
    config["clusters"] = _upsert(
        config.get("clusters") or [], CONTEXT, "cluster", {"server": server}
    )
    config["users"] = _upsert(
        config.get("users") or [], CONTEXT, "user", {"token": token} if token else {}
    )
    context = {"cluster": CONTEXT, "user": CONTEXT, "namespace": "default"}
    config["contexts"] = _upsert(config.get("contexts") or [], CONTEXT, "context", context)
    if not config.get("current-context"):
        config["current-context"] = CONTEXT
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # the user entry may hold the bearer token: only the owner reads it, as kubectl writes it
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # also a file that was there, as kubectl writes its config
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(config, fh, sort_keys=False)
    except OSError as exc:
        raise ValueError(
            f"cannot write the kubeconfig {target}: {exc.strerror}; use --no-kubeconfig"
        ) from None
    return target
