"""Third-party serving engines as images: what `seldonio/mlserver` or `pytorch/torchserve-kfs` run.

A container image is a file system, an entrypoint, a default command and environment variables.
For the engines KServe's stock runtimes name, knserve makes the same from the package index: the
file system is a virtual environment with the engine's packages, pinned to versions verified to
install and serve together (built once per machine, knserve.knative.supervisor.engine_env), and
the entrypoint, command and ENV are the image's. A runtime's container then runs as on a cluster:
Kubernetes' rules choose between the container's `command`/`args` and the image's entrypoint and
command, the image's ENV lies under the container's `env`, and a program is looked up on the
image's PATH (the environment's `bin/` first).

The image's tag picks the engine's version (`seldonio/mlserver:1.7.1`, `1.7.1-slim`); a tag that
names no version (`latest`, KServe's unrendered `mlserver:replace`) gets the verified default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# MLServer 1.7.1 (KServe 0.21's kserve-mlserver tag) with the runtimes KServe selects it for, and
# the libraries they load models with, at the versions pip resolved for them and verified here to
# serve an MLflow model. uvloop is held at 0.21: from 0.22 its get_event_loop() raises outside a
# running loop, which kills MLServer 1.7.1's inference workers as they start.
_MLSERVER_PINS: dict[str, tuple[str, ...]] = {
    "1.7.1": (
        "uvloop==0.21.0",
        "mlflow==3.17.2",
        "scikit-learn==1.9.1",
        "xgboost==3.2.0",
        "lightgbm==4.7.0",
        "numpy==2.4.6",
        "pandas==3.1.1",
    ),
}


@dataclass(frozen=True)
class Engine:
    """A serving engine's image, made from the package index."""

    name: str
    images: frozenset[str]
    # installed at the image's version: `mlserver` -> `mlserver==1.7.1`
    packages: tuple[str, ...]
    default_version: str
    # verified version -> further pins (the libraries the engine loads models with)
    pins: Mapping[str, tuple[str, ...]]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def requirements(self, version: str) -> list[str]:
        """What `pip install` gets for this engine at `version`."""
        return [f"{p}=={version}" for p in self.packages] + list(self.pins.get(version, ()))


MLSERVER = Engine(
    name="mlserver",
    # `mlserver` is the name in KServe's runtime YAML before its kustomization renders it
    images=frozenset({"seldonio/mlserver", "mlserver"}),
    packages=(
        "mlserver",
        "mlserver-sklearn",
        "mlserver-xgboost",
        "mlserver-lightgbm",
        "mlserver-mlflow",
    ),
    default_version="1.7.1",
    pins=_MLSERVER_PINS,
    # The image's CMD is `mlserver start $MLSERVER_MODELS_DIR` (its Dockerfile); with KServe's
    # MLSERVER_MODEL_NAME/URI/IMPLEMENTATION in the env, MLServer loads that one model.
    cmd=("mlserver", "start", "$(MLSERVER_MODELS_DIR)"),
    env={"MLSERVER_MODELS_DIR": "/mnt/models"},
)

ENGINES = (MLSERVER,)

_VERSION = re.compile(r"^v?(\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class EngineImage:
    """An engine at the version an image's tag names."""

    engine: Engine
    version: str

    @property
    def label(self) -> str:
        return f"{self.engine.name} {self.version}"


def image_tag(image: str) -> str:
    """`docker.io/seldonio/mlserver:1.7.1@sha256:…` -> `1.7.1` ('' without a tag)."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def engine_image(name: str, image: str) -> EngineImage | None:
    """The engine an image (`name` is its registry-less name) stands for, else None."""
    for engine in ENGINES:
        if name in engine.images:
            match = _VERSION.match(image_tag(image))
            return EngineImage(engine, match.group(1) if match else engine.default_version)
    return None
