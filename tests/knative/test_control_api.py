"""The control API follows the Kubernetes REST conventions over real SQLite."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from net_fixtures import serve_in_loop

from knserve.knative.apiserver.client import kind_of
from knserve.knative.apiserver.errors import NotFound
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store, merge_patch, selector_matches

KSVC = "/apis/serving.knative.dev/v1/namespaces/default/services"
HELLO: dict[str, Any] = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "hello", "labels": {"team": "ml"}},
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {"image": "python", "command": ["python", "-m", "http.server", "$(PORT)"]}
                ]
            }
        }
    },
}


@pytest.fixture
async def api(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = Store(tmp_path / "state.db")
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client, store
    store.close()


def svc(**changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(HELLO)
    return merge_patch(obj, changes)


async def test_create_get_list_and_server_owned_metadata(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    created = await client.post(KSVC, json=HELLO)
    assert created.status_code == 201
    meta = created.json()["metadata"]
    assert meta["namespace"] == "default" and meta["generation"] == 1
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"].endswith("Z")
    got = (await client.get(f"{KSVC}/hello")).json()
    assert got["metadata"]["uid"] == meta["uid"]
    listed = (await client.get(KSVC)).json()
    assert listed["kind"] == "ServiceList" and [i["metadata"]["name"] for i in listed["items"]] == [
        "hello"
    ]
    everywhere = (await client.get("/apis/serving.knative.dev/v1/services")).json()
    assert len(everywhere["items"]) == 1


async def test_errors_are_status_objects_that_say_what_to_fix(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    await client.post(KSVC, json=HELLO)
    again = await client.post(KSVC, json=HELLO)
    assert again.status_code == 409 and again.json()["reason"] == "AlreadyExists"
    missing = await client.get(f"{KSVC}/nope")
    assert missing.status_code == 404 and missing.json()["kind"] == "Status"
    assert (
        missing.json()["reason"] == "NotFound" and '"nope" not found' in missing.json()["message"]
    )
    bad_json = await client.post(KSVC, content=b"{nope")
    assert bad_json.status_code == 400 and bad_json.json()["reason"] == "BadRequest"


WIDGET = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/apis/serving.knative.dev/v1/namespaces/default/widgets"),
        ("POST", "/apis/serving.knative.dev/v1/namespaces/default/widgets"),
        ("GET", "/apis/example.com/v1/namespaces/default/widgets"),
        ("POST", "/apis/example.com/v1/namespaces/default/widgets"),
        ("GET", "/apis/serving.knative.dev/v2/namespaces/default/services"),
        ("DELETE", "/apis/example.com/v1/namespaces/default/widgets/w"),
        ("GET", "/apis/example.com/v1"),
        ("GET", "/apis/example.com"),
        ("GET", "/api/v1/namespaces/default/pods"),
        ("POST", "/api/v1/namespaces/default/pods"),
    ],
)
async def test_a_kind_the_plane_does_not_serve_is_a_not_found_status_naming_what_it_serves(
    api, method: str, path: str
) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    response = await client.request(method, path, json=WIDGET if method == "POST" else None)
    assert response.status_code == 404, response.text
    body = response.json()
    assert body["kind"] == "Status" and body["reason"] == "NotFound"
    assert "serving.knative.dev/v1 Service (services)" in body["message"]
    assert "serving.kserve.io/v1beta1 InferenceService (inferenceservices)" in body["message"]


def test_applying_a_kind_the_plane_does_not_serve_is_not_found_not_an_internal_error() -> None:
    with pytest.raises(NotFound) as refused:
        kind_of(WIDGET)
    assert refused.value.code == 404 and refused.value.reason == "NotFound"
    assert refused.value.message.startswith(
        'no matches for kind "Widget" in version "example.com/v1"'
    )
    assert "serving.knative.dev/v1 Service (services)" in refused.value.message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"metadata": {"name": "Hello_World"}}, "not a DNS-1123 label", id="name"),
        pytest.param(
            {"spec": {"traffic": [{"latestRevision": True, "percent": 90}]}},
            "spec.traffic percents sum to 90, they must sum to 100",
            id="percents",
        ),
        pytest.param(
            {
                "spec": {
                    "traffic": [
                        {"latestRevision": True, "percent": 50, "tag": "a"},
                        {"revisionName": "hello-00001", "percent": 50, "tag": "a"},
                    ]
                }
            },
            "tag 'a' is already used",
            id="duplicate-tag",
        ),
        pytest.param(
            {"spec": {"traffic": [{"latestRevision": True, "percent": 100, "tag": "1st"}]}},
            "not a DNS-1035 label",
            id="tag-dns1035",
        ),
        pytest.param(
            {"spec": {"traffic": [{"latestRevision": True, "percnt": 100}]}},
            "spec.traffic[0]: unknown field(s) percnt",
            id="schema-typo",
        ),
        pytest.param(
            {"spec": {"traffic": [{"revisionName": "other-00001", "percent": 100}]}},
            "must start with the service's name",
            id="foreign-revision",
        ),
        pytest.param(
            {
                "spec": {
                    "traffic": [
                        {"revisionName": "hello-00001", "latestRevision": True, "percent": 100}
                    ]
                }
            },
            "exclusive",
            id="name-and-latest",
        ),
        pytest.param(
            {"spec": {"template": {"spec": {"containerConcurrency": "many"}}}},
            "containerConcurrency",
            id="schema-type",
        ),
    ],
)
async def test_invalid_objects_are_refused_with_the_field_and_the_fix(
    api, changes: dict, message: str
) -> None:  # type: ignore[no-untyped-def]
    client, store = api
    response = await client.post(KSVC, json=svc(**changes))
    assert response.status_code == 422
    body = response.json()
    assert body["reason"] == "Invalid" and message in body["message"], body["message"]
    assert store.list(by_name("ksvc")) == []


async def test_stale_resource_version_is_a_conflict_and_generation_follows_spec(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    first = (await client.post(KSVC, json=HELLO)).json()
    labelled = svc(
        metadata={
            "labels": {"team": "infra"},
            "resourceVersion": first["metadata"]["resourceVersion"],
        }
    )
    second = (await client.put(f"{KSVC}/hello", json=labelled)).json()
    assert second["metadata"]["generation"] == 1  # metadata only: same generation
    stale = await client.put(f"{KSVC}/hello", json=labelled)
    assert stale.status_code == 409 and stale.json()["reason"] == "Conflict"
    assert "read it again and retry" in stale.json()["message"]
    patched = await client.patch(
        f"{KSVC}/hello",
        content=orjson.dumps({"spec": {"template": {"metadata": {"name": "hello-v2"}}}}),
        headers={"content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200 and patched.json()["metadata"]["generation"] == 2
    assert int(patched.json()["metadata"]["resourceVersion"]) > int(
        second["metadata"]["resourceVersion"]
    )


async def test_status_is_a_subresource(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    await client.post(KSVC, json=HELLO)
    status = {
        "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}
    }
    updated = await client.patch(
        f"{KSVC}/hello/status",
        json=status,
        headers={"content-type": "application/merge-patch+json"},
    )
    assert updated.json()["status"]["conditions"][0]["status"] == "True"
    assert updated.json()["metadata"]["generation"] == 1
    # a spec update through the main resource keeps the status it had
    obj = (await client.get(f"{KSVC}/hello")).json()
    obj["spec"]["template"]["metadata"] = {"annotations": {"a": "b"}}
    obj.pop("status")
    kept = (await client.put(f"{KSVC}/hello", json=obj)).json()
    assert kept["status"]["observedGeneration"] == 1 and kept["metadata"]["generation"] == 2


async def test_deleting_an_owner_deletes_what_it_owns(api) -> None:  # type: ignore[no-untyped-def]
    client, store = api
    owner = (await client.post(KSVC, json=HELLO)).json()
    ref = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "name": "hello",
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    route = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Route",
        "metadata": {"name": "hello", "ownerReferences": [ref]},
        "spec": {"traffic": [{"configurationName": "hello", "percent": 100}]},
    }
    assert (
        await client.post("/apis/serving.knative.dev/v1/namespaces/default/routes", json=route)
    ).status_code == 201
    assert (await client.delete(f"{KSVC}/hello")).status_code == 200
    assert store.list(by_name("route")) == []


async def test_label_selectors(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    await client.post(KSVC, json=HELLO)
    await client.post(KSVC, json=svc(metadata={"name": "other", "labels": {"team": "web"}}))
    names = lambda r: [i["metadata"]["name"] for i in r.json()["items"]]  # noqa: E731
    assert names(await client.get(KSVC, params={"labelSelector": "team=ml"})) == ["hello"]
    assert names(await client.get(KSVC, params={"labelSelector": "team!=ml"})) == ["other"]
    # equality terms are also matched by SQLite (a key with dots and a slash, `==`, with sets)
    labels = {"example.com/tier": "gpu", "team": "web"}
    await client.post(KSVC, json=svc(metadata={"name": "third", "labels": labels}))
    for selector, want in [
        ("example.com/tier=gpu", ["third"]),
        ("example.com/tier==gpu,team=web", ["third"]),
        ("team=web,example.com/tier notin (gpu)", ["other"]),
        ("team=web, example.com/tier", ["third"]),
        ("example.com/tier=cpu", []),
    ]:
        assert names(await client.get(KSVC, params={"labelSelector": selector})) == want
    assert selector_matches({"a": "1"}, "a,!b") and not selector_matches({"a": "1"}, "!a")


async def test_objects_survive_a_restart(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    kind = by_name("ksvc")
    created = store.create(kind, HELLO)
    store.close()
    reopened = Store(tmp_path / "state.db")
    assert reopened.get(kind, "default", "hello") == created
    assert reopened.resource_version() == int(created["metadata"]["resourceVersion"])
    reopened.close()


async def test_discovery_lists_groups_and_resources(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    groups = {g["name"] for g in (await client.get("/apis")).json()["groups"]}
    assert {"serving.knative.dev", "eventing.knative.dev", "serving.kserve.io"} <= groups
    resources = (await client.get("/apis/serving.knative.dev/v1")).json()["resources"]
    assert {"services", "services/status", "revisions", "routes"} <= {r["name"] for r in resources}


async def test_a_token_is_required_when_configured(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    transport = httpx.ASGITransport(app=create_app(store, token="s3cret"))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        assert (await client.get(KSVC)).status_code == 401
        ok = await client.get(KSVC, headers={"authorization": "Bearer s3cret"})
        assert ok.status_code == 200
    store.close()


async def test_watch_streams_added_modified_deleted_over_real_http(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.db")
    store.create(by_name("ksvc"), HELLO)
    events: list[tuple[str, str]] = []
    async with serve_in_loop(create_app(store)) as url:
        client = httpx.AsyncClient(base_url=url, timeout=10)
        async with client, client.stream("GET", KSVC, params={"watch": "true"}) as stream:
            lines = stream.aiter_lines()
            events.append(_event(await anext(lines)))
            await client.patch(
                f"{KSVC}/hello",
                json={"metadata": {"labels": {"x": "y"}}},
                headers={"content-type": "application/merge-patch+json"},
            )
            events.append(_event(await anext(lines)))
            await client.delete(f"{KSVC}/hello")
            events.append(_event(await anext(lines)))
    store.close()
    assert events == [("ADDED", "hello"), ("MODIFIED", "hello"), ("DELETED", "hello")]


async def _watch_lines(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """A watch that timeoutSeconds ends (the ASGI transport hands over the whole body)."""
    response = await client.get(KSVC, params={"watch": "true", "timeoutSeconds": 1, **params})
    assert response.status_code == 200, response.text
    return [orjson.loads(line) for line in response.text.splitlines()]


async def test_a_watch_resumes_from_a_lists_resource_version(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    await client.post(KSVC, json=svc())
    listed = (await client.get(KSVC)).json()["metadata"]["resourceVersion"]
    await client.patch(
        f"{KSVC}/hello",
        json={"metadata": {"labels": {"x": "y"}}},
        headers={"content-type": "application/merge-patch+json"},
    )
    await client.delete(f"{KSVC}/hello")
    events = await _watch_lines(client, resourceVersion=listed)
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]  # not the ADDED the list had
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert int(listed) < versions[0] < versions[1]  # a deletion has a version of its own
    # without a version (or with "0"): what exists, as ADDED, then the changes
    await client.post(KSVC, json=svc())
    assert [e["type"] for e in await _watch_lines(client)] == ["ADDED"]
    assert [e["type"] for e in await _watch_lines(client, resourceVersion="0")] == ["ADDED"]


async def test_a_watch_from_before_the_kept_history_is_expired(tmp_path: Path) -> None:
    store = Store(tmp_path / "w.db")
    store.create(by_name("ksvc"), HELLO)
    old = store.resource_version()
    store.patch(by_name("ksvc"), "default", "hello", {"metadata": {"labels": {"x": "y"}}})
    store.close()
    store = Store(tmp_path / "w.db")  # a restart: the history starts again
    transport = httpx.ASGITransport(app=create_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        [event] = await _watch_lines(client, resourceVersion=old)
        assert event["type"] == "ERROR"
        assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
        assert "list again" in event["object"]["message"]
        now = store.resource_version()
        assert await _watch_lines(client, resourceVersion=now) == []  # current: nothing missed
        bad = await client.get(KSVC, params={"watch": "true", "timeoutSeconds": "soon"})
        assert bad.status_code == 400 and "timeoutSeconds" in bad.json()["message"]
    store.close()


def _event(line: str) -> tuple[str, str]:
    event = orjson.loads(line)
    return event["type"], event["object"]["metadata"]["name"]


async def test_server_side_apply_creates_then_replaces_the_spec(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    apply = {"content-type": "application/apply-patch+yaml"}
    with_timeout = svc()
    with_timeout["spec"]["template"]["spec"]["timeoutSeconds"] = 30
    created = await client.patch(
        f"{KSVC}/hello?fieldManager=knserve&force=true", json=with_timeout, headers=apply
    )
    assert created.status_code == 201, created.text
    again = await client.patch(
        f"{KSVC}/hello?fieldManager=knserve", json=with_timeout, headers=apply
    )
    assert (
        again.json()["metadata"]["resourceVersion"] == created.json()["metadata"]["resourceVersion"]
    )
    # a field the applier no longer sets is removed, as apply does for its field manager
    without = await client.patch(f"{KSVC}/hello?fieldManager=knserve", json=svc(), headers=apply)
    assert "timeoutSeconds" not in without.json()["spec"]["template"]["spec"]
    assert without.json()["metadata"]["generation"] == 2


async def test_core_discovery_namespaces_and_events_for_generic_clients(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    assert (await client.get("/api")).json()["versions"] == ["v1"]
    names = {r["name"] for r in (await client.get("/api/v1")).json()["resources"]}
    assert names == {"namespaces", "events"}
    await client.post(
        KSVC.replace("/default/", "/team-a/"), json={**svc(), "metadata": {"name": "hello"}}
    )
    listed = (await client.get("/api/v1/namespaces")).json()
    assert [n["metadata"]["name"] for n in listed["items"]] == ["default", "team-a"]
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "x"}}
    assert (await client.post("/api/v1/namespaces/default/events", json=event)).status_code == 201


async def test_field_selectors_on_list_select_by_name_and_namespace(api) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    for namespace, name in (("default", "hello"), ("default", "other"), ("team-a", "hello")):
        path = KSVC.replace("/default/", f"/{namespace}/")
        assert (await client.post(path, json=svc(metadata={"name": name}))).status_code == 201
    everywhere = "/apis/serving.knative.dev/v1/services"

    async def names(path: str, selector: str) -> list[str]:
        response = await client.get(path, params={"fieldSelector": selector})
        assert response.status_code == 200, response.text
        return [
            f"{i['metadata']['namespace']}/{i['metadata']['name']}"
            for i in response.json()["items"]
        ]

    assert await names(KSVC, "metadata.name=hello") == ["default/hello"]
    assert await names(KSVC, "metadata.name==other") == ["default/other"]
    assert await names(KSVC, "metadata.name!=hello") == ["default/other"]
    assert await names(everywhere, "metadata.name=hello") == ["default/hello", "team-a/hello"]
    assert await names(everywhere, "metadata.name=hello,metadata.namespace!=default") == [
        "team-a/hello"
    ]
    assert await names(everywhere, " metadata.namespace = team-a ") == ["team-a/hello"]
    # the label selector still applies alongside
    both = await client.get(
        KSVC, params={"fieldSelector": "metadata.name=hello", "labelSelector": "team=web"}
    )
    assert both.json()["items"] == []


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("spec.template=x", "field label not supported: spec.template"),
        ("status.url=x", "field label not supported: status.url"),
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
    ],
)
async def test_an_unsupported_field_selector_is_a_bad_request(
    api, selector: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    client, _ = api
    for params in ({"fieldSelector": selector}, {"fieldSelector": selector, "watch": "true"}):
        response = await client.get(KSVC, params=params)
        assert response.status_code == 400, response.text
        assert response.json()["reason"] == "BadRequest"
        assert response.json()["message"].startswith(message)


async def test_a_watch_with_a_field_selector_sends_only_that_objects_events(api) -> None:  # type: ignore[no-untyped-def]
    # kubectl wait ksvc/hello watches with fieldSelector=metadata.name=hello: another object's
    # events must not reach it, or it reports that object's condition.
    client, _ = api
    await client.post(KSVC, json=svc())
    await client.post(KSVC, json=svc(metadata={"name": "other"}))
    only_hello = {"fieldSelector": "metadata.name=hello"}
    events = await _watch_lines(client, **only_hello)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "hello")]
    listed = (await client.get(KSVC, params=only_hello)).json()["metadata"]["resourceVersion"]
    merge = {"content-type": "application/merge-patch+json"}
    for step, name in enumerate(("other", "hello", "other")):
        await client.patch(
            f"{KSVC}/{name}", json={"metadata": {"labels": {"step": str(step)}}}, headers=merge
        )
    await client.delete(f"{KSVC}/other")
    await client.delete(f"{KSVC}/hello")
    events = await _watch_lines(client, resourceVersion=listed, **only_hello)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "hello"),
        ("DELETED", "hello"),
    ]
    others = await _watch_lines(
        client, resourceVersion=listed, fieldSelector="metadata.name!=hello"
    )
    assert [e["object"]["metadata"]["name"] for e in others] == ["other", "other", "other"]
