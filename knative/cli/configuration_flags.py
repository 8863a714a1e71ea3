"""kn's flags that edit a Service's revision template and metadata (`service create` and `update`).

They do what kn's `pkg/commands/service/configuration_edit_flags.go` and `pkg/flags/podspec.go` do:

- `--cmd` and `--arg` repeat, each value one element of the argv, as kn's StringArray flags. A
  `--cmd` given once is also shell-split, so `--cmd "python3 -m http.server $(PORT)"` keeps working.
- `-p/--port [NAME:]PORT` is the container's one port; NAME is `h2c` (HTTP/2) or `http1`.
- `-a/--annotation` goes on the revision template, and on the Service too unless it is an
  autoscaling annotation (kn keeps those off the Service). `--annotation-service` and
  `--annotation-revision` set one side only and win over `--annotation`; an autoscaling annotation
  given to `--annotation-service` is refused, as kn refuses it.
- `-l/--label` goes on the Service and the revision template; `--label-service` and
  `--label-revision` on one only. For labels and annotations `KEY-` removes KEY.
- `--scale N` sets min-scale and max-scale to N; `--scale A..B` sets both ends, `A..` only the
  minimum and `..B` only the maximum. `--scale-init`, `--scale-activation`, `--scale-metric`,
  `--scale-target`, `--scale-utilization` and `--scale-window` set the annotation of that name.
- `--cluster-local` labels the Service `networking.knative.dev/visibility: cluster-local`;
  `--no-cluster-local` removes the label.
- `--revision-name` is a template: `{{.Service}}`, `{{.Generation}}` (the Service's generation
  plus one) and `{{.Random N}}` (N random consonants) expand, and a name that does not start with
  `{service}-` gets that prefix (kn's `GenerateRevisionName`).
"""

from __future__ import annotations

import copy
import random
import re
import shlex
from collections.abc import Callable, Sequence
from typing import Any

import click

SCALE = "autoscaling.knative.dev/"
VISIBILITY_LABEL = "networking.knative.dev/visibility"
CLUSTER_LOCAL = "cluster-local"
# kn's charChoices for {{.Random N}}: consonants only, so no word is spelt by accident.
CONSONANTS = "bcdfghjklmnpqrstvwxyz"
# flag (its option name) -> the autoscaling annotation it sets, in kn's order of application
SCALE_FLAGS = {
    "scale_min": "min-scale",
    "scale_max": "max-scale",
    "scale_window": "window",
    "scale_target": "target",
    "scale_metric": "metric",
    "scale_activation": "activation-scale",
    "scale_utilization": "target-utilization-percentage",
}
_FIELD = re.compile(r"\{\{\s*\.(\w+)\s*(\d*)\s*\}\}")


def template_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The flags that change the revision template and the Service's metadata."""
    options = [
        click.option("--image", help="container image (knserve/runtime, a `func build` image, …)"),
        click.option(
            "--cmd",
            "cmd",
            multiple=True,
            help="the command instead of the image's: repeat for each "
            "element (--cmd sh --cmd run.sh); one --cmd is also shell-split",
        ),
        click.option("--arg", "args", multiple=True, help="an argument (repeat for several)"),
        click.option(
            "-p", "--port", help="the port the container listens on: [NAME:]PORT, NAME h2c or http1"
        ),
        click.option("-e", "--env", "envs", multiple=True, help="K=V, or K- to remove"),
        click.option(
            "-a",
            "--annotation",
            "annotations",
            multiple=True,
            help="K=V on the Service and the revision (autoscaling ones: the revision only), or K-",
        ),
        click.option(
            "--annotation-service",
            "annotations_service",
            multiple=True,
            help="K=V on the Service, or K-",
        ),
        click.option(
            "--annotation-revision",
            "annotations_revision",
            multiple=True,
            help="K=V on the revision, or K-",
        ),
        click.option(
            "-l",
            "--label",
            "labels",
            multiple=True,
            help="K=V on the Service and the revision, or K-",
        ),
        click.option(
            "--label-service", "labels_service", multiple=True, help="K=V on the Service, or K-"
        ),
        click.option(
            "--label-revision", "labels_revision", multiple=True, help="K=V on the revision, or K-"
        ),
        click.option("--scale", help="min and max replicas: N (both), A..B, A.. or ..B"),
        click.option("--scale-min", type=int),
        click.option("--scale-max", type=int),
        click.option(
            "--scale-init", type=int, help="replicas a new revision starts with (initial-scale)"
        ),
        click.option(
            "--scale-activation", type=int, help="the least replicas once scaled up from zero"
        ),
        click.option("--scale-metric", help="what the autoscaler scales on: concurrency or rps"),
        click.option(
            "--scale-target", type=int, help="the metric's value per replica the autoscaler aims at"
        ),
        click.option("--scale-utilization", type=int, help="percent of the target"),
        click.option("--scale-window", help="stable window, e.g. 60s"),
        click.option("--concurrency-limit", type=int, help="hard limit of requests per replica"),
        click.option("--timeout", "timeout_seconds", type=int, help="request timeout in seconds"),
        click.option(
            "--cluster-local/--no-cluster-local",
            "cluster_local",
            default=None,
            help="reachable only inside the cluster (the visibility label)",
        ),
        click.option(
            "--revision-name",
            help="the new revision's name: {{.Service}}, {{.Generation}} and "
            "{{.Random N}} expand; {service}- is prefixed when missing",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def pairs(values: Sequence[str], flag: str) -> list[tuple[str, str | None]]:
    """`K=V` → (K, V); `K-` → (K, None) to remove."""
    out: list[tuple[str, str | None]] = []
    for value in values:
        if value.endswith("-") and "=" not in value:
            out.append((value[:-1], None))
            continue
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(
                f"{value!r}: write KEY=VALUE, or KEY- to remove", param_hint=flag
            )
        out.append((key, val))
    return out


def _edited(
    current: dict[str, str] | None, changes: Sequence[tuple[str, str | None]]
) -> dict[str, str]:
    result = dict(current or {})
    for key, value in changes:
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def _set_map(meta: dict[str, Any], key: str, changes: Sequence[tuple[str, str | None]]) -> None:
    if not changes:
        return
    edited = _edited(meta.get(key), changes)
    if edited:
        meta[key] = edited
    else:
        meta.pop(key, None)


def container_port(value: str) -> dict[str, Any]:
    """`8080` → `{containerPort: 8080}`; `h2c:8080` → `{name: h2c, containerPort: 8080}`."""
    name, sep, number = value.partition(":") if ":" in value else ("", "", value)
    if not number.isdigit() or not 0 < int(number) < 65536 or (sep and not name):
        raise click.BadParameter(
            f"{value!r} is not [NAME:]PORT; write it as 8080 or h2c:8080", param_hint="--port"
        )
    return {"name": name, "containerPort": int(number)} if name else {"containerPort": int(number)}


def scale_bounds(value: str) -> tuple[int | None, int | None]:
    """kn's `--scale`: `N` → (N, N); `A..B` → (A, B); `A..` → (A, None); `..B` → (None, B)."""
    low, sep, high = value.partition("..")
    if not sep:
        high = low
    try:
        bounds = tuple(int(part) if part else None for part in (low, high))
    except ValueError:
        bounds = (None, None)
    if bounds == (None, None):
        raise click.BadParameter(
            f"{value!r}: scale must be of the format x..y or x (e.g. 2, 1..5, 1.. or ..5)",
            param_hint="--scale",
        )
    return bounds  # type: ignore[return-value]


def revision_name(
    template: str, service: str, generation: int, rng: random.Random | None = None
) -> str:
    """kn's `GenerateRevisionName`: expand the template, then prefix `{service}-` if it is missing."""
    rng = rng or random.Random()

    def expand(match: re.Match[str]) -> str:
        field, length = match[1], match[2]
        if field == "Service" and not length:
            return service
        if field == "Generation" and not length:
            return str(generation)
        if field == "Random" and length:
            return "".join(rng.choice(CONSONANTS) for _ in range(int(length)))
        raise click.BadParameter(
            f"{match[0]} in {template!r}: the template knows {{{{.Service}}}}, {{{{.Generation}}}} "
            "and {{.Random N}}",
            param_hint="--revision-name",
        )

    name = _FIELD.sub(expand, template)
    if "{{" in name:
        raise click.BadParameter(
            f"{template!r} has a template field that does not close", param_hint="--revision-name"
        )
    if name and not name.startswith(f"{service}-"):
        name = f"{service}-{name}"
    return name


def _command(values: Sequence[str]) -> list[str]:
    return shlex.split(values[0]) if len(values) == 1 else list(values)


def _edit_container(container: dict[str, Any], opts: dict[str, Any]) -> None:
    if opts.get("image"):
        container["image"] = opts["image"]
    if opts.get("cmd"):
        container["command"] = _command(opts["cmd"])
    if opts.get("args"):
        container["args"] = list(opts["args"])
    if opts.get("port"):
        container["ports"] = [container_port(opts["port"])]
    if opts.get("envs"):
        env = {e["name"]: e for e in container.get("env") or []}
        for key, value in pairs(opts["envs"], "--env"):
            if value is None:
                env.pop(key, None)
            else:
                env[key] = {"name": key, "value": value}
        container["env"] = list(env.values())


def _scale_annotations(opts: dict[str, Any]) -> list[tuple[str, str | None]]:
    changes: list[tuple[str, str | None]] = []
    if opts.get("scale") is not None:
        for flag in ("scale_min", "scale_max"):
            if opts.get(flag) is not None:
                raise click.UsageError(
                    f"only --scale or --{flag.replace('_', '-')} can be specified"
                )
        low, high = scale_bounds(opts["scale"])
        changes += [
            (SCALE + k, str(v))
            for k, v in (("min-scale", low), ("max-scale", high))
            if v is not None
        ]
    for option, key in SCALE_FLAGS.items():
        if opts.get(option) is not None:
            changes.append((SCALE + key, str(opts[option])))
    return changes


def _edit_metadata(
    service_meta: dict[str, Any], revision_meta: dict[str, Any], opts: dict[str, Any]
) -> None:
    labels = pairs(opts.get("labels") or (), "--label")
    _set_map(
        service_meta, "labels", labels + pairs(opts.get("labels_service") or (), "--label-service")
    )
    _set_map(
        revision_meta,
        "labels",
        labels + pairs(opts.get("labels_revision") or (), "--label-revision"),
    )
    if opts.get("cluster_local") is not None:
        _set_map(
            service_meta,
            "labels",
            [(VISIBILITY_LABEL, CLUSTER_LOCAL if opts["cluster_local"] else None)],
        )
    both = pairs(opts.get("annotations") or (), "--annotation")
    on_service = pairs(opts.get("annotations_service") or (), "--annotation-service")
    for key, _ in on_service:
        if key.startswith(SCALE):
            raise click.BadParameter(
                f"a Service cannot have the autoscaling annotation {key}; set it on "
                "the revision with --annotation-revision",
                param_hint="--annotation-service",
            )
    # kn keeps autoscaling annotations off the Service; `--annotation K-` removes K from both
    service_side = [(k, v) for k, v in both if v is None or not k.startswith(SCALE)]
    _set_map(service_meta, "annotations", service_side + on_service)
    revision_side = both + pairs(opts.get("annotations_revision") or (), "--annotation-revision")
    if opts.get("scale_init") is not None:
        if any(k == SCALE + "initial-scale" for k, _ in both):
            raise click.UsageError(
                f"only one of --scale-init or --annotation {SCALE}initial-scale can be specified"
            )
        revision_side.append((SCALE + "initial-scale", str(opts["scale_init"])))
    _set_map(revision_meta, "annotations", _scale_annotations(opts) + revision_side)


def apply_template_flags(
    svc: dict[str, Any], opts: dict[str, Any], rng: random.Random | None = None
) -> None:
    """Change the Service (in place) as the flags say; flags not given change nothing."""
    template = svc.setdefault("spec", {}).setdefault("template", {})
    before = copy.deepcopy(template)
    meta = template.setdefault("metadata", {})
    spec = template.setdefault("spec", {})
    _edit_container(spec.setdefault("containers", [{}])[0], opts)
    _edit_metadata(svc.setdefault("metadata", {}), meta, opts)
    if opts.get("concurrency_limit") is not None:
        spec["containerConcurrency"] = opts["concurrency_limit"]
    if opts.get("timeout_seconds") is not None:
        spec["timeoutSeconds"] = opts["timeout_seconds"]
    if opts.get("revision_name"):
        generation = int(svc["metadata"].get("generation") or 0) + 1
        if name := revision_name(opts["revision_name"], svc["metadata"]["name"], generation, rng):
            meta["name"] = name
    elif "name" in meta and _without_name(template) != _without_name(before):
        # a BYO name is for one template: a changed template without a new name gets a generated one
        del meta["name"]
    if not meta:
        template.pop("metadata")


def _without_name(template: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(template)
    (stripped.get("metadata") or {}).pop("name", None)
    if not stripped.get("metadata"):
        stripped.pop("metadata", None)
    return stripped
