"""The resource kinds the control API serves, each with its real CRD schema and extra rules.

One registry for every kind (Knative Serving, Eventing, KServe), so the store, the API, the CLI
and the kube target treat them alike; a kind's own rules are a function registered with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from knserve.knative.apiserver import (
    graph_validation,
    isvc_validation,
    runtime_validation,
    trained_model_validation,
    validation,
)
from knserve.knative.apiserver.schema_validation import schema_errors

if TYPE_CHECKING:
    from knserve.knative.apiserver.autoscaler_config import AutoscalerConfig

ConfigCheck = Callable[[dict[str, Any], "AutoscalerConfig | None"], list[str]]


@dataclass
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    crd_file: str
    checks: list[Callable[[dict[str, Any]], list[str]]] = field(default_factory=list)
    short_names: tuple[str, ...] = ()
    # What the local plane cannot run although Knative can; not checked for a cluster.
    plane_checks: list[Callable[[dict[str, Any]], list[str]]] = field(default_factory=list)
    # Rules that read config-autoscaler, as Knative's webhook does (None: the config is unknown).
    config_checks: list[ConfigCheck] = field(default_factory=list)
    # False for a cluster-scoped kind (ClusterServingRuntime): no namespace, stored under "".
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    def scope(self, namespace: str | None) -> str:
        """The namespace an object of this kind lives in: "" for a cluster-scoped kind (whatever
        was given, as the API server ignores it), else `namespace` or "default"."""
        return (namespace or "default") if self.namespaced else ""

    def errors(
        self,
        obj: dict[str, Any],
        *,
        local_plane: bool = True,
        autoscaler: AutoscalerConfig | None = None,
    ) -> list[str]:
        """Schema errors first (they say what is malformed), then the kind's own rules, then (for
        the local plane) what only the plane cannot run. `autoscaler` is config-autoscaler; None
        (a cluster's, not known here) skips the rules that read it."""
        errors = schema_errors(obj, self.crd_file, self.version)
        if not errors:
            for check in [*self.checks, *(self.plane_checks if local_plane else [])]:
                errors += check(obj)
            for config_check in self.config_checks:
                errors += config_check(obj, autoscaler)
        return errors


KINDS: dict[tuple[str, str], Kind] = {}


def register(kind: Kind) -> Kind:
    KINDS[(kind.group, kind.plural)] = kind
    return kind


def by_plural(group: str, plural: str) -> Kind | None:
    return KINDS.get((group, plural))


def by_kind(api_version: str, kind: str) -> Kind | None:
    for found in KINDS.values():
        if found.api_version == api_version and found.kind == kind:
            return found
    return None


def served() -> str:
    """The kinds the plane serves, for messages about one it does not: `serving.knative.dev/v1
    Service (services), …`."""
    return ", ".join(sorted(f"{k.api_version} {k.kind} ({k.plural})" for k in KINDS.values()))


def by_name(name: str) -> Kind | None:
    """A kind by any of the names kubectl accepts: plural, singular, kind or short name."""
    lowered = name.lower()
    for found in KINDS.values():
        if lowered in (found.plural, found.kind.lower(), *found.short_names):
            return found
    return None


def named(name: str) -> Kind:
    """A kind the code names (`named("services")`): like `by_name`, but one that is not registered
    is a programming error, so it raises instead of returning None for the caller to check."""
    found = by_name(name)
    if found is None:
        raise LookupError(f"no kind named {name!r}; the plane serves {served()}")
    return found


SERVING = "serving.knative.dev"
register(
    Kind(
        SERVING,
        "v1",
        "Service",
        "services",
        "service.yaml",
        [validation.service_errors],
        ("ksvc", "kservice"),
        [
            validation.one_container_errors,
            validation.kpa_only_errors,
            validation.template_outlier_errors,
        ],
        [validation.template_autoscaling_errors],
    )
)
register(
    Kind(
        SERVING,
        "v1",
        "Configuration",
        "configurations",
        "configuration.yaml",
        [validation.name_errors],
        ("config", "cfg"),
        [validation.kpa_only_errors, validation.template_outlier_errors],
        [validation.template_autoscaling_errors],
    )
)
register(
    Kind(
        SERVING,
        "v1",
        "Revision",
        "revisions",
        "revision.yaml",
        [validation.name_errors],
        ("rev",),
        [validation.kpa_only_errors, validation.revision_outlier_errors],
        [validation.revision_autoscaling_errors],
    )
)
register(
    Kind(
        SERVING,
        "v1",
        "Route",
        "routes",
        "route.yaml",
        [validation.route_errors],
        ("rt",),
        config_checks=[validation.route_autoscaling_errors],
    )
)
register(
    Kind("eventing.knative.dev", "v1", "Broker", "brokers", "broker.yaml", [validation.name_errors])
)
register(
    Kind(
        "eventing.knative.dev",
        "v1",
        "Trigger",
        "triggers",
        "trigger.yaml",
        [validation.name_errors],
    )
)
register(
    Kind(
        "serving.kserve.io",
        "v1beta1",
        "InferenceService",
        "inferenceservices",
        "serving.kserve.io_inferenceservices.yaml",
        [isvc_validation.inference_service_errors],
        ("isvc",),
    )
)
register(
    Kind(
        "serving.kserve.io",
        "v1alpha1",
        "ServingRuntime",
        "servingruntimes",
        "serving.kserve.io_servingruntimes.yaml",
        [validation.name_errors, runtime_validation.serving_runtime_errors],
    )
)
register(
    Kind(
        "serving.kserve.io",
        "v1alpha1",
        "ClusterServingRuntime",
        "clusterservingruntimes",
        "serving.kserve.io_clusterservingruntimes.yaml",
        [validation.name_errors, runtime_validation.serving_runtime_errors],
        namespaced=False,
    )
)
register(
    Kind(
        "serving.kserve.io",
        "v1alpha1",
        "InferenceGraph",
        "inferencegraphs",
        "serving.kserve.io_inferencegraphs.yaml",
        [graph_validation.inference_graph_errors],
        ("ig",),
    )
)
register(
    Kind(
        "serving.kserve.io",
        "v1alpha1",
        "TrainedModel",
        "trainedmodels",
        "serving.kserve.io_trainedmodels.yaml",
        [trained_model_validation.trained_model_errors],
        ("tm",),
    )
)
