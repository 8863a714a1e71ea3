"""What a revision's container runs as a process on the local plane.

Knative's container contract, as processes: `command` and `args` run as given, after Kubernetes'
`$(VAR)` expansion against the container's environment (`$$(VAR)` stays a literal `$(VAR)`, an
unknown variable is left as written). Without a command, the image decides:

- `knserve/runtime` and KServe's model server images (`kserve/sklearnserver`, `xgbserver`,
  `lgbserver`, `pytorchserver`, with any registry and tag) run `python -m knserve.runtime` with the
  container's args, which accepts KServe's flags. A single-framework image serves only its
  framework, as KServe's does (an xgbserver given a scikit-learn file fails to load it), so it
  runs with that `--model_format` unless the args name one;
- KServe's InferenceGraph router image (`kserve/router`) runs knserve's router,
  `python -m knserve.knative.router`, with the container's args (`--graph-json …`);
- an image built by `knserve func build` (`knserve.local/…@sha256:…`) runs that function in its
  environment;
- a third-party engine's image (MLServer's `seldonio/mlserver`) runs that engine from its own
  environment (knserve.knative.supervisor.engines): its entrypoint and command as the image has
  them, unless the container gives its own, and its ENV (`with_image_env`) under the container's;
- anything else cannot run without containers, and the error says what to use instead.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from knserve.knative.supervisor.engine_env import environment_dir
from knserve.knative.supervisor.engines import EngineImage, engine_image

RUNTIME_IMAGES = frozenset(
    {
        "knserve/runtime",
        "kserve/sklearnserver",
        "kserve/xgbserver",
        "kserve/lgbserver",
        "kserve/predictiveserver",
        "kserve/pytorchserver",
        "kserve/kserve-container",
    }
)

# KServe's single-framework server images and the one format each loads.
_IMAGE_FORMATS = {
    "kserve/sklearnserver": "sklearn",
    "kserve/xgbserver": "xgboost",
    "kserve/lgbserver": "lightgbm",
    "kserve/pytorchserver": "pytorch",
}
_FORMAT_FLAGS = ("--model_format", "--model-format", "--framework")
ROUTER_IMAGE = "kserve/router"

# Engines' images that cannot run on the local plane, and what to use instead. TorchServe itself
# runs here (torchserve and torch from the package index, Java 17), but the kfs image's entrypoint
# serves KServe's protocol through a wrapper, on 8080 in front of TorchServe, that ships only in
# that image; and TorchServe keeps one pid file per machine, so replicas would need a TMPDIR each.
UNAVAILABLE_IMAGES = {
    "pytorch/torchserve-kfs": (
        "TorchServe's KServe image (pytorch/torchserve-kfs) cannot run on the local plane: its "
        "KServe wrapper, which serves port 8080 in front of TorchServe, ships only inside the "
        "image; save the model as TorchScript (.pt) or torch.export (.pt2) and serve it with "
        "knserve's runtime (runtime knserve-pytorch, or image kserve/pytorchserver)"
    ),
}

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ImageError(ValueError):
    """The container cannot be run locally; the message says how to fix it."""


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion of command and args."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR.sub(replace, value)


def image_name(image: str) -> str:
    """`docker.io/kserve/sklearnserver:v0.11@sha256:…` → `kserve/sklearnserver`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    parts = name.split("/")
    if len(parts) > 2 or (len(parts) == 2 and ("." in parts[0] or ":" in parts[0])):
        parts = parts[1:]  # drop the registry host
    return "/".join(parts[-2:]) if len(parts) >= 2 else parts[0]


def engine_of(container: Mapping[str, Any]) -> EngineImage | None:
    """The third-party engine the container's image stands for, else None."""
    image = container.get("image") or ""
    return engine_image(image_name(image), image)


def with_image_env(container: Mapping[str, Any]) -> dict[str, Any]:
    """`container` with its image's ENV before its own `env`, as a container runtime layers them
    (the container's value wins; later entries may name earlier ones with `$(VAR)`). An engine's
    image puts its environment's `bin/` first on PATH. Done before anything rewrites the env (the
    storage initializer maps `/mnt/models` in the image's values too)."""
    engine = engine_of(container)
    if engine is None:
        return dict(container)
    root = environment_dir(engine)
    image_env = {
        **engine.engine.env,
        "VIRTUAL_ENV": str(root),
        "PATH": os.pathsep.join([str(root / "bin"), os.environ.get("PATH", os.defpath)]),
    }
    own = container.get("env") or []
    names = {entry.get("name") for entry in own}
    layered = [{"name": k, "value": v} for k, v in image_env.items() if k not in names]
    return {**container, "env": layered + list(own)}


def resolve(container: Mapping[str, Any], env: Mapping[str, str]) -> tuple[list[str], Path | None]:
    """The argv and working folder that run `container` with `env`."""
    command = [expand(c, env) for c in container.get("command") or []]
    args = [expand(a, env) for a in container.get("args") or []]
    workdir = Path(container["workingDir"]) if container.get("workingDir") else None
    if command:
        return command + args, workdir
    engine = engine_of(container)
    if engine is not None:
        # Kubernetes' rule: args replace the image's command and follow its entrypoint.
        default = args or [expand(c, env) for c in engine.engine.cmd]
        return [*engine.engine.entrypoint, *default], workdir
    image = container.get("image") or ""
    if image_name(image) in UNAVAILABLE_IMAGES:
        raise ImageError(UNAVAILABLE_IMAGES[image_name(image)])
    if image_name(image) in RUNTIME_IMAGES:
        fmt = _IMAGE_FORMATS.get(image_name(image))
        if fmt and not any(a.split("=", 1)[0] in _FORMAT_FLAGS for a in args):
            args = [f"--model_format={fmt}", *args]
        return [sys.executable, "-m", "knserve.runtime", *args], workdir
    if image_name(image) == ROUTER_IMAGE:
        return [sys.executable, "-m", "knserve.knative.router", *args], workdir
    from knserve.functions.errors import FunctionError
    from knserve.functions.images import command_for_image

    try:
        found = command_for_image(image)
    except FunctionError as exc:
        raise ImageError(str(exc)) from None
    if found is not None:
        argv, cwd = found
        return argv + args, workdir or cwd
    raise ImageError(
        f"image {image!r} cannot run on the local plane (there are no containers here): give the "
        "container a command, use knserve/runtime (or a KServe model server image) for a model, or "
        "an image made by `knserve func build`"
    )
