"""`deploy.subscriptions` of func.yaml as Triggers: the pure translation, and `func deploy`'s sync."""

from __future__ import annotations

from typing import Any

import pytest

from knserve.functions import funcyaml
from knserve.functions.deploy import FUNCTION_LABEL, service_for, triggers_for
from knserve.functions.errors import FunctionError
from knserve.knative.apiserver.client import Client
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.cli.func import _sync_triggers

SERVICES, TRIGGERS = by_name("services"), by_name("triggers")


def function(*subscriptions: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
    deploy: dict[str, Any] = {"subscriptions": list(subscriptions)}
    if namespace:
        deploy["namespace"] = namespace
    return {
        "specVersion": "0.36.0",
        "name": "classify",
        "runtime": "python",
        "image": "knserve.local/classify@sha256:abc",
        "created": "2025-01-01T00:00:00Z",
        "deploy": deploy,
    }


def test_each_subscription_is_a_trigger_named_as_func_names_it() -> None:
    spec = function(
        {"source": "default", "filters": {"type": "io.kserve.inference.request"}},
        {"source": "images", "filters": {"type": "image.uploaded", "subject": "cats"}},
    )
    funcyaml.validate(spec)  # the shape func's own schema allows
    triggers = triggers_for(spec)
    assert [t["metadata"]["name"] for t in triggers] == [
        "classify-function-trigger-0",
        "classify-function-trigger-1",
    ]
    first, second = triggers
    assert first == {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {
            "name": "classify-function-trigger-0",
            "namespace": "default",
            "labels": {FUNCTION_LABEL: "classify"},
        },
        "spec": {
            "broker": "default",
            "subscriber": {
                "ref": {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Service",
                    "name": "classify",
                }
            },
            "filter": {"attributes": {"type": "io.kserve.inference.request"}},
        },
    }
    assert second["spec"]["broker"] == "images"
    assert second["spec"]["filter"] == {"attributes": {"type": "image.uploaded", "subject": "cats"}}


def test_triggers_are_valid_against_knatives_schema_and_live_beside_the_service() -> None:
    spec = function(
        {"source": "default", "filters": {"type": "t"}}, {"source": "b"}, namespace="ml"
    )
    triggers = triggers_for(spec)
    for trigger in triggers:
        assert TRIGGERS.errors(trigger) == []
    assert {t["metadata"]["namespace"] for t in triggers} == {
        service_for(spec)["metadata"]["namespace"]
    }
    assert "filter" not in triggers[1]["spec"]  # no filters: every event of the broker
    assert {t["metadata"]["namespace"] for t in triggers_for(spec, "other")} == {"other"}


def test_an_owner_service_is_referenced_so_deleting_it_deletes_the_triggers() -> None:
    owner = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "classify", "uid": "1234"},
    }
    [trigger] = triggers_for(function({"source": "default"}), owner=owner)
    assert trigger["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "name": "classify",
            "uid": "1234",
        }
    ]


@pytest.mark.parametrize(
    "deploy", [{}, {"subscriptions": []}, {"subscriptions": None}], ids=["none", "empty", "null"]
)
def test_no_subscriptions_no_triggers(deploy: dict[str, Any]) -> None:
    assert triggers_for({"name": "f", "deploy": deploy}) == []
    assert triggers_for({"name": "f"}) == []


def test_a_subscription_without_a_source_names_the_fix() -> None:
    with pytest.raises(FunctionError, match=r"deploy.subscriptions\[0\].*source"):
        triggers_for({"name": "f", "deploy": {"subscriptions": [{"filters": {"type": "t"}}]}})


# ---- func deploy's sync, against the real control API (in process) ---------------------------------


@pytest.fixture
def client(control_api: Client) -> Client:
    return control_api


def deployed(client: Client, spec: dict[str, Any]) -> dict[str, Any]:
    """What `func deploy` does after the Service: create it (or take it), then sync triggers."""
    svc = service_for(spec)
    try:
        current = client.get(SERVICES, "default", svc["metadata"]["name"])
    except Exception:
        current = client.create(SERVICES, svc)
    _sync_triggers(client, spec, "default", current)
    return current


def stored(client: Client) -> dict[str, dict[str, Any]]:
    return {t["metadata"]["name"]: t for t in client.list(TRIGGERS, "default")}


def test_deploy_creates_updates_and_prunes_the_functions_triggers(client: Client) -> None:
    client.create(
        TRIGGERS,
        {
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Trigger",
            "metadata": {"name": "someone-elses", "namespace": "default"},
            "spec": {"broker": "default", "subscriber": {"uri": "http://x.test/"}},
        },
    )
    svc = deployed(
        client,
        function(
            {"source": "default", "filters": {"type": "a"}},
            {"source": "default", "filters": {"type": "b"}},
        ),
    )
    triggers = stored(client)
    assert set(triggers) == {
        "someone-elses",
        "classify-function-trigger-0",
        "classify-function-trigger-1",
    }
    owners = triggers["classify-function-trigger-0"]["metadata"]["ownerReferences"]
    assert [o["uid"] for o in owners] == [svc["metadata"]["uid"]]

    # one subscription changes its filter, the other is gone
    deployed(client, function({"source": "default", "filters": {"type": "c"}}))
    triggers = stored(client)
    assert set(triggers) == {"someone-elses", "classify-function-trigger-0"}
    assert triggers["classify-function-trigger-0"]["spec"]["filter"] == {
        "attributes": {"type": "c"}
    }

    # a new broker for the same subscription: the trigger is made again on it
    deployed(client, function({"source": "other", "filters": {"type": "c"}}))
    moved = stored(client)["classify-function-trigger-0"]
    assert moved["spec"]["broker"] == "other"
    assert moved["metadata"]["uid"] != triggers["classify-function-trigger-0"]["metadata"]["uid"]

    # no subscriptions left: only the trigger the function never made stays
    deployed(client, function())
    assert set(stored(client)) == {"someone-elses"}


def test_deleting_the_function_service_deletes_its_triggers(client: Client) -> None:
    deployed(client, function({"source": "default"}, {"source": "default"}))
    assert len(stored(client)) == 2
    client.delete(SERVICES, "default", "classify")
    assert stored(client) == {}
