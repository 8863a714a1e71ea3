"""Knative's webhook rules for autoscaling annotations, at the control API, with Knative's messages.

The cases and messages follow Knative Serving's pkg/apis/autoscaling/annotation_validation_test.go;
the paths are where the webhook reports them (a Service's template annotations sit at
spec.template.metadata.annotations).
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from knserve.knative.apiserver.autoscaler_config import AutoscalerConfig
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store

P = "autoscaling.knative.dev/"
T = "spec.template.metadata.annotations." + P  # where a Service's template annotations are
SERVING = "/apis/serving.knative.dev/v1/namespaces/default"
KSVC = f"{SERVING}/services"
CONTAINERS = [{"image": "python", "command": ["python", "-m", "http.server", "$(PORT)"]}]


def service(annotations: dict[str, str] | None = None, name: str = "hello") -> dict[str, Any]:
    template: dict[str, Any] = {"spec": {"containers": copy.deepcopy(CONTAINERS)}}
    if annotations is not None:
        template["metadata"] = {"annotations": annotations}
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": template},
    }


class Api:
    def __init__(self, client: httpx.AsyncClient, store: Store) -> None:
        self.client, self.store = client, store

    async def refused(self, path: str, obj: dict[str, Any], method: str = "POST") -> str:
        response = await self.client.request(method, path, json=obj)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["kind"] == "Status" and body["reason"] == "Invalid", body
        return str(body["message"])

    async def accepted(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(path, json=obj)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]


async def _api(tmp_path: Path, config: AutoscalerConfig | None = None) -> AsyncIterator[Api]:
    store = Store(tmp_path / "state.db", autoscaler=config)
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield Api(client, store)
    store.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for found in _api(tmp_path):
        yield found


REFUSED = [
    ({P + "window": "5s"}, f"expected 6s <= 5s <= 1h0m0s: {T}window"),
    ({P + "window": "365h"}, f"expected 6s <= 365h <= 1h0m0s: {T}window"),
    ({P + "window": "10.5s"}, f"must be specified with at most second precision: {T}window"),
    ({P + "window": "jerry"}, f"invalid value: jerry: {T}window"),
    (
        {P + "metric": "cpu"},
        f"invalid value: cpu: {T}metric (kpa.autoscaling.knative.dev scales on concurrency or rps)",
    ),
    ({P + "class": "hpa.autoscaling.knative.dev", P + "metric": ""}, f"invalid value: : {T}metric"),
    ({P + "initial-scale": "0"}, f"invalid value: 0: {T}initial-scale=0 not allowed by cluster"),
    ({P + "initial-scale": "-1"}, f"invalid value: -1: {T}initial-scale must be greater than 0"),
    ({P + "initial-scale": "two"}, f"invalid value: two: {T}initial-scale"),
    (
        {P + "activation-scale": "1"},
        f"activation-scale=1 must be greater than 1: {T}activation-scale",
    ),
    (
        {P + "min-scale": "3", P + "activation-scale": "2"},
        f"min-scale=3 is greater than activation-scale=2: {T}activation-scale",
    ),
    (
        {P + "max-scale": "1", P + "activation-scale": "2"},
        f"max-scale=1 is less than activation-scale=2: {T}activation-scale",
    ),
    (
        {P + "min-scale": "5", P + "max-scale": "2"},
        f"max-scale=2 is less than min-scale=5: {T}max-scale, {T}min-scale",
    ),
    ({P + "min-scale": "-1"}, f"expected 0 <= -1 <= 2147483647: {T}min-scale"),
    ({P + "max-scale": "2147483648"}, f"expected 0 <= 2147483648 <= 2147483647: {T}max-scale"),
    ({P + "min-scale": "1.5"}, f"invalid value: 1.5: {T}min-scale (use a whole number)"),
    (
        {P + "min-scale": "bar", P + "max-scale": "bar"},
        f"invalid value: bar: {T}max-scale, {T}min-scale",
    ),
    (
        {P + "panic-window-percentage": "202"},
        f"expected 1 <= 202 <= 100: {T}panic-window-percentage",
    ),
    ({P + "panic-window-percentage": "fifty"}, f"invalid value: fifty: {T}panic-window-percentage"),
    (
        {P + "panic-threshold-percentage": "109"},
        f"expected 110 <= 109 <= 1000: {T}panic-threshold-percentage",
    ),
    (
        {P + "panic-threshold-percentage": "10009"},
        f"expected 110 <= 10009 <= 1000: {T}panic-threshold-percentage",
    ),
    ({P + "target": "0"}, f"target 0 should be at least 0.01: {T}target"),
    ({P + "target": "-11"}, f"target -11 should be at least 0.01: {T}target"),
    (
        {P + "target-utilization-percentage": "0"},
        f"expected 1 <= 0 <= 100: {T}target-utilization-percentage",
    ),
    (
        {P + "target-utilization-percentage": "101"},
        f"expected 1 <= 101 <= 100: {T}target-utilization-percentage",
    ),
    ({P + "target-burst-capacity": "-11"}, f"invalid value: -11: {T}target-burst-capacity"),
    ({P + "scale-down-delay": "311m"}, f"expected 0s <= 311m <= 1h0m0s: {T}scale-down-delay"),
    ({P + "scale-down-delay": "-42s"}, f"expected 0s <= -42s <= 1h0m0s: {T}scale-down-delay"),
    (
        {P + "scale-down-delay": "1500ms"},
        f"must be specified with at most second precision: {T}scale-down-delay",
    ),
    (
        {P + "scale-to-zero-pod-retention-period": "-42s"},
        f"expected 0s <= -42s <= 1h0m0s: {T}scale-to-zero-pod-retention-period",
    ),
    (
        {P + "scale-to-zero-pod-retention-period": "never"},
        f"invalid value: never: {T}scale-to-zero-pod-retention-period",
    ),
    ({P + "class": "unsupported.knative.dev"}, f"invalid value: unsupported.knative.dev: {T}class"),
    (
        {P + "class": "kpa.autoscaling.knative.dev", P + "metric-aggregation-algorithm": "random"},
        f"invalid value: random: {T}metric-aggregation-algorithm",
    ),
]


@pytest.mark.parametrize(("annotations", "message"), REFUSED)
async def test_knatives_webhook_rules_refuse_a_service_with_the_field_and_knatives_message(
    api: Api, annotations: dict[str, str], message: str
) -> None:
    refused = await api.refused(KSVC, service(annotations))
    assert refused.startswith('Service "hello" is invalid: ')
    assert message in refused, refused
    assert api.store.list(by_name("services")) == []  # nothing was stored to sit without status


async def test_every_broken_rule_is_reported_at_once(api: Api) -> None:
    refused = await api.refused(
        KSVC,
        service(
            {
                P + "min-scale": "-4",
                P + "max-scale": "never",
                P + "panic-window-percentage": "-11",
                P + "panic-threshold-percentage": "fifty",
            }
        ),
    )
    # one message each, in the order Knative's FieldError sorts them
    assert refused.split(": ", 1)[1].split("; ") == [
        f"expected 0 <= -4 <= 2147483647: {T}min-scale",
        f"expected 1 <= -11 <= 100: {T}panic-window-percentage",
        f"invalid value: fifty: {T}panic-threshold-percentage (use a number from 110 to 1000)",
        f"invalid value: never: {T}max-scale (use a whole number)",
    ]


async def test_an_update_is_held_to_the_same_rules(api: Api) -> None:
    created = await api.accepted(KSVC, service({P + "window": "6s"}))
    created["spec"]["template"]["metadata"]["annotations"][P + "window"] = "5s"
    refused = await api.refused(f"{KSVC}/hello", created, method="PUT")
    assert f"expected 6s <= 5s <= 1h0m0s: {T}window" in refused
    patch = {"spec": {"template": {"metadata": {"annotations": {P + "metric": "memory"}}}}}
    response = await api.client.patch(
        f"{KSVC}/hello", json=patch, headers={"content-type": "application/merge-patch+json"}
    )
    assert response.status_code == 422 and f"invalid value: memory: {T}metric" in response.text
    stored = api.store.get(by_name("services"), "default", "hello")
    assert stored["spec"]["template"]["metadata"]["annotations"] == {P + "window": "6s"}


async def test_configurations_and_revisions_are_validated_where_their_annotations_are(
    api: Api,
) -> None:
    configuration = service({P + "window": "5s"}) | {"kind": "Configuration"}
    refused = await api.refused(f"{SERVING}/configurations", configuration)
    assert f"expected 6s <= 5s <= 1h0m0s: {T}window" in refused
    revision = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Revision",
        "metadata": {"name": "hello-00001", "annotations": {P + "max-scale": "-3"}},
        "spec": {"containers": copy.deepcopy(CONTAINERS)},
    }
    refused = await api.refused(f"{SERVING}/revisions", revision)
    assert f"expected 0 <= -3 <= 2147483647: metadata.annotations.{P}max-scale" in refused


@pytest.mark.parametrize("plural", ["services", "configurations", "routes"])
async def test_autoscaling_annotations_on_the_object_itself_are_refused_with_where_they_go(
    api: Api, plural: str
) -> None:
    # A classic mistake: min-scale on the Service's metadata does nothing on a cluster either.
    obj = service() | {
        "kind": {"services": "Service", "configurations": "Configuration", "routes": "Route"}[
            plural
        ]
    }
    if plural == "routes":
        obj["spec"] = {"traffic": [{"configurationName": "hello", "percent": 100}]}
    obj["metadata"]["annotations"] = {P + "min-scale": "1", "example.com/note": "kept"}
    refused = await api.refused(f"{SERVING}/{plural}", obj)
    assert (
        f'invalid key name "{P}min-scale": metadata.annotations (autoscaling annotations must be '
        'put under "spec.template.metadata.annotations" to work)'
    ) in refused


async def test_valid_annotations_and_legacy_spellings_are_accepted(api: Api) -> None:
    await api.accepted(
        KSVC,
        service(
            {
                P + "class": "kpa.autoscaling.knative.dev",
                P + "metric": "rps",
                P + "target": "0.01",
                P + "window": "1h",
                P + "minScale": "1",
                P + "maxScale": "4",
                P + "activation-scale": "2",
                P + "initialScale": "2",
                P + "targetUtilizationPercentage": "80",
                P + "targetBurstCapacity": "-1",
                P + "panicWindowPercentage": "100",
                P + "panicThresholdPercentage": "110",
                P + "scaleDownDelay": "1h",
                P + "scaleToZeroPodRetentionPeriod": "1.5s",
                P + "metric-aggregation-algorithm": "linear",
                P + "custom-key": "other annotations of the group are not Knative's concern",
            }
        ),
    )


async def test_a_legacy_spelling_is_validated_and_named_as_written(api: Api) -> None:
    refused = await api.refused(KSVC, service({P + "minScale": "3", P + "maxScale": "x"}))
    assert f"invalid value: x: {T}maxScale" in refused
    refused = await api.refused(KSVC, service({P + "initialScale": "0"}))
    assert f"invalid value: 0: {T}initialScale=0 not allowed by cluster" in refused


async def test_when_both_spellings_are_set_the_kebab_case_one_is_read_as_knative_reads_it(
    api: Api,
) -> None:
    # Knative's KeyPriority lookup: min-scale first, minScale only when min-scale is absent.
    await api.accepted(KSVC, service({P + "min-scale": "1", P + "minScale": "-5"}))
    refused = await api.refused(KSVC, service({P + "min-scale": "-5", P + "minScale": "1"}, "b"))
    assert f"expected 0 <= -5 <= 2147483647: {T}min-scale" in refused


async def test_rules_that_read_config_autoscaler_read_the_planes(tmp_path: Path) -> None:
    allowing = AutoscalerConfig(allow_zero_initial_scale=True, max_scale_limit=10)
    async for api in _api(tmp_path, allowing):
        await api.accepted(KSVC, service({P + "initial-scale": "0", P + "max-scale": "10"}))
        refused = await api.refused(KSVC, service({P + "max-scale": "11"}, "b"))
        assert f"expected 1 <= 11 <= 10: {T}max-scale" in refused
        refused = await api.refused(KSVC, service({P + "max-scale": "0"}, "c"))
        assert f"max-scale=0 (unlimited), must be less than 10: {T}max-scale" in refused


async def test_the_local_plane_refuses_an_autoscaler_class_it_cannot_run(api: Api) -> None:
    hpa = {P + "class": "hpa.autoscaling.knative.dev", P + "metric": "cpu"}
    await api.accepted(KSVC, service(hpa))  # Knative's HPA class runs on the plane
    custom = {P + "class": "keda.autoscaling.example.com"}
    refused = await api.refused(KSVC, service(custom, "b"))
    assert (
        f"{T}class is 'keda.autoscaling.example.com'; the local plane scales with Knative's KPA "
        "or HPA" in refused
    )
    # A cluster runs other classes: the kube target's client-side check lets it through.
    kind = by_name("services")
    assert kind is not None and kind.errors(service(custom), local_plane=False) == []


def test_the_kube_targets_check_skips_the_rules_that_need_the_clusters_config() -> None:
    kind = by_name("services")
    assert kind is not None
    zero = service({P + "initial-scale": "0"})
    assert kind.errors(zero, local_plane=False) == []  # the cluster may allow it
    assert kind.errors(zero, local_plane=False, autoscaler=AutoscalerConfig()) == [
        f"invalid value: 0: {T}initial-scale=0 not allowed by cluster (use 1 or more, or set "
        'allow-zero-initial-scale: "true" in config-autoscaler, e.g. knserve up --autoscaler '
        "allow-zero-initial-scale=true)"
    ]
    assert kind.errors(service({P + "window": "5s"}), local_plane=False) == [
        f"expected 6s <= 5s <= 1h0m0s: {T}window"
    ]
