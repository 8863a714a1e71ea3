"""`kubectl get` prints each kind with its CRD's printer columns, as a cluster does."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubectl_fixtures import Kubectl, table_rows

from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.store import Store
from knserve.knative.apiserver.tables import columns, human_duration

READY = [
    {"type": "Ready", "status": "True", "reason": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
]
CONTAINERS = {"containers": [{"image": "python"}]}
OBJECTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "ksvc": (
        {"spec": {"template": {"spec": CONTAINERS}}},
        {
            "url": "http://hello.default.localhost",
            "latestCreatedRevisionName": "hello-00002",
            "latestReadyRevisionName": "hello-00001",
            "conditions": [{"type": "Ready", "status": "False", "reason": "RevisionFailed"}],
        },
    ),
    "isvc": (
        {
            "spec": {
                "predictor": {
                    "model": {"modelFormat": {"name": "sklearn"}, "storageUri": "file:///m"}
                }
            }
        },
        {
            "url": "http://hello.default.localhost",
            "conditions": READY,
            "components": {
                "predictor": {
                    "traffic": [
                        {
                            "revisionName": "hello-predictor-00002",
                            "percent": 90,
                            "latestRevision": True,
                        },
                        {"revisionName": "hello-predictor-00001", "percent": 10, "tag": "prev"},
                    ]
                }
            },
        },
    ),
    "rev": (
        {
            "metadata": {
                "labels": {
                    "serving.knative.dev/configuration": "hello",
                    "serving.knative.dev/configurationGeneration": "3",
                }
            },
            "spec": CONTAINERS,
        },
        {"conditions": READY, "actualReplicas": 2, "desiredReplicas": 3},
    ),
    "route": ({"spec": {}}, {"url": "http://hello.default.localhost", "conditions": READY}),
    "broker": (
        {
            "metadata": {
                "annotations": {"eventing.knative.dev/broker.class": "MTChannelBasedBroker"}
            }
        },
        {"address": {"url": "http://broker.local/default/hello"}, "conditions": READY},
    ),
    "trigger": (
        {"spec": {"broker": "default", "subscriber": {"uri": "http://sink.local"}}},
        {"subscriberUri": "http://sink.local", "conditions": READY},
    ),
}
# what each kind's row shows, column by column after NAME (the ages checked apart)
CELLS = {
    "ksvc": [
        "http://hello.default.localhost",
        "hello-00002",
        "hello-00001",
        "False",
        "RevisionFailed",
    ],
    "isvc": [
        "http://hello.default.localhost",
        "True",
        "10",
        "90",
        "hello-predictor-00001",
        "hello-predictor-00002",
    ],
    "rev": ["hello", "3", "True", "", "2", "3"],
    "route": ["http://hello.default.localhost", "True"],
    "broker": ["http://broker.local/default/hello", None, "True"],
    "trigger": ["default", "http://sink.local", None, "True"],
}


def _create(store: Store, short: str) -> None:
    kind = by_name(short)
    assert kind is not None
    body, status = OBJECTS[short]
    meta = {"name": "hello", "namespace": "default", **body.get("metadata", {})}
    obj = {"apiVersion": kind.api_version, "kind": kind.kind, **body, "metadata": meta}
    created = store.create(kind, obj)
    store.write_status(kind, created, status)


def _header(short: str, wide: bool) -> list[str]:
    kind = by_name(short)
    assert kind is not None
    shown = [c for c in columns(kind) if wide or not c.get("priority")]
    return ["NAME", *(c["name"].upper() for c in shown)]


@pytest.mark.parametrize("short", list(OBJECTS))
def test_columns_are_the_crds_printer_columns(
    kubectl_api: tuple[Kubectl, Store], short: str
) -> None:
    kubectl, store = kubectl_api
    _create(store, short)
    rows = table_rows(kubectl.run("get", short).stdout)
    assert rows[0] == _header(short, wide=False)
    cells = dict(zip(rows[0], rows[1], strict=True))
    assert cells["NAME"] == "hello"
    for column, expected in zip(rows[0][1:], CELLS[short], strict=False):
        if expected is not None:
            assert cells[column] == expected, (short, column, rows)
    if "AGE" in cells:
        assert cells["AGE"].endswith("s"), cells  # created seconds ago: "0s", "1s", …
    wide = table_rows(kubectl.run("get", short, "-o", "wide").stdout)
    assert wide[0] == _header(short, wide=True)


def test_one_get_of_several_kinds_prints_a_table_each(kubectl_api: tuple[Kubectl, Store]) -> None:
    kubectl, store = kubectl_api
    for short in OBJECTS:
        _create(store, short)
    shown = kubectl.run("get", "ksvc,isvc,rev,route,broker,trigger").stdout
    for short in OBJECTS:
        assert "   ".join(_header(short, wide=False)[:2]).replace(" ", "") in shown.replace(" ", "")
    assert (
        "service.serving.knative.dev/hello" in shown
        and "broker.eventing.knative.dev/hello" in shown
    )
    wide = kubectl.run("get", "broker", "-o", "wide").stdout
    assert "CLASS" in wide and "MTChannelBasedBroker" in wide


def test_yaml_json_and_jsonpath_outputs_carry_the_object(
    kubectl_api: tuple[Kubectl, Store],
) -> None:
    kubectl, store = kubectl_api
    _create(store, "ksvc")
    as_yaml = yaml.safe_load(kubectl.run("get", "ksvc", "hello", "-o", "yaml").stdout)
    assert as_yaml["status"]["url"] == "http://hello.default.localhost"
    listed = json.loads(kubectl.run("get", "ksvc", "-o", "json").stdout)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["hello"]
    path = "{.items[0].status.conditions[?(@.type=='Ready')].reason}"
    assert kubectl.run("get", "ksvc", "-o", f"jsonpath={path}").stdout == "RevisionFailed"
    names = kubectl.run("get", "ksvc", "-o", "custom-columns=N:.metadata.name,U:.status.url")
    assert table_rows(names.stdout) == [["N", "U"], ["hello", "http://hello.default.localhost"]]


def test_ages_read_as_kubectl_writes_them() -> None:
    assert [human_duration(s) for s in (-5, 0, 59, 119, 330, 600, 3 * 3600 + 60)] == [
        "<invalid>",
        "0s",
        "59s",
        "119s",
        "5m30s",
        "10m",
        "3h1m",
    ]
    assert [human_duration(h * 3600) for h in (30, 50, 24 * 30, 24 * 800)] == [
        "30h",
        "2d2h",
        "30d",
        "2y70d",
    ]
