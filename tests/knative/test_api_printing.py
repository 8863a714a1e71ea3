"""The control API's pieces behind kubectl: Kubernetes' JSONPath dialect, pages, dry runs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from knserve.knative.apiserver.jsonpath import JsonPathError, find
from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store

OBJ: dict[str, Any] = {
    "metadata": {
        "labels": {"serving.knative.dev/configuration": "hello"},
        "annotations": {"eventing.knative.dev/broker.class": "MTChannelBasedBroker"},
    },
    "status": {
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "Other", "status": "False"}],
        "traffic": [{"tag": "prev", "percent": 10}, {"latestRevision": True, "percent": 90}],
    },
}


@pytest.mark.parametrize(
    ("path", "values"),
    [
        (".status.conditions[?(@.type=='Ready')].status", ["True"]),
        ('.status.conditions[?(@.type=="Other")].status', ["False"]),
        (".status.conditions[?(@.type!='Ready')].type", ["Other"]),
        (".status.traffic[?(@.latestRevision==true)].percent", [90]),
        (".status.traffic[?(@.tag)].percent", [10]),
        (".status.conditions[*].type", ["Ready", "Other"]),
        (".status.conditions[-1].type", ["Other"]),
        (".metadata.labels['serving\\.knative\\.dev/configuration']", ["hello"]),
        (".metadata.annotations.eventing\\.knative\\.dev/broker\\.class", ["MTChannelBasedBroker"]),
        ("{$.status.url}", []),
    ],
)
def test_jsonpath_dialect(path: str, values: list[Any]) -> None:
    assert find(OBJ, path) == values


def test_jsonpath_refuses_what_it_cannot_read() -> None:
    with pytest.raises(JsonPathError, match="without"):
        find(OBJ, ".status.conditions[0")
    with pytest.raises(JsonPathError, match="cannot read"):
        find(OBJ, ".status.conditions[?(@.type ~ 'x')]")


async def test_bad_continue_token_and_dry_run_value_are_400s() -> None:
    store = Store()
    transport = httpx.ASGITransport(app=create_app(store))
    base = "/apis/serving.knative.dev/v1/namespaces/default/services"
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        bad = await client.get(base, params={"limit": "1", "continue": "nonsense"})
        assert bad.status_code == 400 and "list again without it" in bad.json()["message"]
        dry = await client.post(base, params={"dryRun": "Yes"}, json={})
        assert dry.status_code == 400
        assert dry.json()["message"] == 'dryRun: Unsupported value: "Yes": supported values: "All"'
        apply = await client.patch(
            f"{base}/x", content=b"{}", headers={"Content-Type": "application/apply-patch+yaml"}
        )
        assert apply.status_code == 400 and "fieldManager" in apply.json()["message"]
    store.close()
