"""The container images a knserve release is built into, and how manifests name them.

`make images REGISTRY=… TAG=…` (knative/deploy/build-images.sh) builds three images from the
Containerfiles in knative/deploy/, each `{registry}/knserve/{name}:{tag}`:

- `runtime`: knserve's model server (`python -m knserve.runtime`), the image of knserve's own
  ClusterServingRuntimes (`knserve-onnxruntime`, `knserve-pytorch`, `knserve-custom`);
- `function-base`: what a function's Containerfile (written by `knserve func build`) starts FROM;
- `operator`: the InferenceService operator of deploy/operator.yaml.

The registry is a host with an optional path (`ghcr.io/acme`, `localhost:5001`) or empty (Docker
Hub's `knserve/…`); the repository part stays `knserve/{name}` so the local plane still knows a
pushed `registry/knserve/runtime:tag` as knserve's runtime. The tag defaults to the package
version and is never `latest`: an exported manifest names exactly the image a build made, so a
rollout is a change of tag, not a mutable pointer a node may have cached.

Both default from the environment (`KNSERVE_REGISTRY`, `KNSERVE_TAG`), which `knserve export
--registry/--tag` and `knserve func build` read too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

RUNTIME = "runtime"
FUNCTION_BASE = "function-base"
OPERATOR = "operator"
IMAGES = (RUNTIME, FUNCTION_BASE, OPERATOR)
REGISTRY_ENV = "KNSERVE_REGISTRY"
TAG_ENV = "KNSERVE_TAG"

# The distribution reference grammar's tag, and a registry host[:port] with optional path.
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REGISTRY = re.compile(
    r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$"
)


class InvalidRelease(ValueError):
    """A registry or tag no image can be named with; the message says what to use."""


def package_version() -> str:
    """knserve's version: the default tag of every image."""
    try:
        return version("knserve")
    except PackageNotFoundError:  # a source tree that is not installed
        return "0.0.0"


@dataclass(frozen=True)
class Release:
    """A registry and tag: `image(name)` is the reference the build tags and manifests name."""

    registry: str
    tag: str

    def image(self, name: str) -> str:
        prefix = f"{self.registry}/" if self.registry else ""
        return f"{prefix}knserve/{name}:{self.tag}"


def release(registry: str | None = None, tag: str | None = None) -> Release:
    """The release images are named for: the arguments, else `$KNSERVE_REGISTRY` and
    `$KNSERVE_TAG`, else no registry and the package version."""
    if registry is None:
        registry = os.environ.get(REGISTRY_ENV, "")
    if tag is None:
        tag = os.environ.get(TAG_ENV) or package_version()
    registry = registry.strip().rstrip("/")
    if tag == "latest":
        raise InvalidRelease(
            "the image tag may not be 'latest': manifests name a fixed tag "
            f"(give --tag/{TAG_ENV} a version, default {package_version()})"
        )
    if not _TAG.match(tag):
        raise InvalidRelease(
            f"image tag {tag!r} is not valid: letters, digits, '_', '.', '-', at most 128, "
            "not starting with '.' or '-'"
        )
    if registry and not _REGISTRY.match(registry):
        raise InvalidRelease(
            f"registry {registry!r} is not valid: a host[:port] with an optional lowercase path, "
            "such as ghcr.io/acme or localhost:5001"
        )
    return Release(registry, tag)
