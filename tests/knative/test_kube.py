"""The kube target's client, over real HTTP against a Kubernetes-API server on loopback.

The server is the local plane's own control API under uvicorn, with a bearer token, reached
through a kubeconfig as a cluster would be: the official `kubernetes` client does the requests.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kube_server import TOKEN, Recorder, Switchboard, write_kubeconfig
from net_fixtures import free_port, serve_in_thread

from knserve.knative.apiserver.client import Client
from knserve.knative.apiserver.errors import AlreadyExists, ApiError, Conflict, Invalid, NotFound
from knserve.knative.apiserver.kinds import by_name
from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store
from knserve.knative.kube.client import (
    APPLY_PATCH,
    KubeClient,
    ResourceClient,
    client_for,
    validate,
)

SERVICES, ISVCS = by_name("services"), by_name("inferenceservices")
KSVC_PATH = "/apis/serving.knative.dev/v1/namespaces/default/services"
HELLO: dict[str, Any] = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "hello", "labels": {"team": "ml"}},
    "spec": {"template": {"spec": {"containers": [{"image": "ghcr.io/knative/helloworld-go"}]}}},
}
# KServe's "first InferenceService" example, verbatim.
SKLEARN_IRIS: dict[str, Any] = {
    "apiVersion": "serving.kserve.io/v1beta1",
    "kind": "InferenceService",
    "metadata": {"name": "sklearn-iris"},
    "spec": {
        "predictor": {
            "model": {
                "modelFormat": {"name": "sklearn"},
                "storageUri": "gs://kfserving-examples/models/sklearn/1.0/model",
            }
        }
    },
}


def hello(**spec_changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(HELLO)
    obj["spec"]["template"]["spec"]["containers"][0].update(spec_changes)
    return obj


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state.db")
    yield store
    store.close()


@pytest.fixture
def recorder(store: Store) -> Recorder:
    return Recorder(create_app(store, token=TOKEN))


@pytest.fixture
def server(recorder: Recorder, switchboard: tuple[Switchboard, str]) -> Iterator[str]:
    board, url = switchboard
    board.app = recorder
    yield url
    board.app = None


@pytest.fixture
def kubeconfig(tmp_path: Path, server: str) -> Path:
    return write_kubeconfig(tmp_path / "kubeconfig", server)


# ---- the kubeconfig ----------------------------------------------------------------------------


def test_from_kubeconfig_reads_the_server_the_token_and_the_context_namespace(
    kubeconfig: Path, server: str, recorder: Recorder
) -> None:
    client = KubeClient.from_kubeconfig(kubeconfig)
    assert (client.base_url, client.namespace) == (server, "default")
    assert client.list(SERVICES, "default") == []  # the token was accepted
    other = KubeClient.from_kubeconfig(kubeconfig, context="elsewhere")
    assert other.namespace == "ml"
    assert recorder.requests == [("GET", KSVC_PATH, "", "")]


def test_kubeconfig_defaults_to_the_kubeconfig_environment_variable(
    kubeconfig: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    assert KubeClient.from_kubeconfig().base_url == server


def test_an_unknown_context_is_refused_with_the_contexts_there_are(kubeconfig: Path) -> None:
    with pytest.raises(
        ApiError, match=r"no context 'prod' in the kubeconfig .*: elsewhere, loopback"
    ):
        KubeClient.from_kubeconfig(kubeconfig, context="prod")


def test_a_missing_kubeconfig_says_how_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(ApiError, match=r"cannot load the kubeconfig .*missing.*KUBECONFIG"):
        KubeClient.from_kubeconfig(tmp_path / "missing")


# ---- apply, get, list, delete ------------------------------------------------------------------


def test_apply_get_list_and_delete_a_knative_service(kube: KubeClient) -> None:
    action, created = kube.apply(hello())
    assert action == "created"
    assert created["metadata"]["uid"] and created["metadata"]["generation"] == 1
    assert kube.apply(hello()) == ("unchanged", created)
    action, changed = kube.apply(hello(image="ghcr.io/knative/helloworld-go:v2"))
    assert action == "configured" and changed["metadata"]["generation"] == 2
    got = kube.get(SERVICES, "default", "hello")
    assert got["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v2")
    assert [s["metadata"]["name"] for s in kube.list(SERVICES, "default", "team=ml")] == ["hello"]
    assert kube.list(SERVICES, "default", "team=web") == []
    assert [s["metadata"]["name"] for s in kube.list(SERVICES)] == ["hello"]  # every namespace
    kube.delete(SERVICES, "default", "hello")
    with pytest.raises(NotFound, match='services.serving.knative.dev "hello" not found'):
        kube.get(SERVICES, "default", "hello")


def test_apply_get_list_and_delete_an_inferenceservice(kube: KubeClient) -> None:
    action, created = kube.apply(copy.deepcopy(SKLEARN_IRIS))
    assert action == "created" and created["metadata"]["namespace"] == "default"
    got = kube.get(ISVCS, "default", "sklearn-iris")
    assert got["spec"] == SKLEARN_IRIS["spec"]
    assert [i["metadata"]["name"] for i in kube.list(ISVCS, "default")] == ["sklearn-iris"]
    kube.delete(ISVCS, "default", "sklearn-iris")
    assert kube.list(ISVCS, "default") == []


def test_apply_puts_the_namespace_asked_for_into_the_object(kube: KubeClient) -> None:
    obj = hello()
    _, created = kube.apply(obj, namespace="ml")
    assert obj["metadata"]["namespace"] == created["metadata"]["namespace"] == "ml"
    assert kube.list(SERVICES, "default") == []


def test_apply_leaves_status_and_server_owned_metadata_out(kube: KubeClient) -> None:
    kube.apply(hello())
    fetched = kube.get(SERVICES, "default", "hello")
    fetched["status"] = {"url": "http://made.up"}
    fetched["metadata"]["resourceVersion"] = "1"  # stale; applied objects carry no precondition
    action, result = kube.apply(fetched)
    assert action == "unchanged" and "url" not in (result.get("status") or {})


def test_apply_is_a_server_side_apply_patch_with_knserve_as_field_manager(
    kube: KubeClient, recorder: Recorder
) -> None:
    kube.apply(hello())
    patches = [r for r in recorder.requests if r[0] == "PATCH"]
    assert patches[0][1] == f"{KSVC_PATH}/hello"
    assert patches[0][3] == APPLY_PATCH
    assert set(patches[0][2].split("&")) == {"fieldManager=knserve", "force=true"}


class _NoApplyPatch:
    """A server from before server-side apply: apply patches are 415, as Kubernetes answers."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        content_type = dict(scope.get("headers") or []).get(b"content-type", b"")
        if scope["type"] == "http" and content_type.startswith(APPLY_PATCH.encode()):
            body = orjson.dumps(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "UnsupportedMediaType",
                    "code": 415,
                    "message": "the body of the request was in an unknown format",
                }
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": 415,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


def test_a_server_without_server_side_apply_gets_create_or_replace(
    store: Store, tmp_path: Path
) -> None:
    recorder = Recorder(_NoApplyPatch(create_app(store, token=TOKEN)))
    with serve_in_thread(recorder) as url:
        kube = KubeClient.from_kubeconfig(write_kubeconfig(tmp_path / "kubeconfig", url))
        assert kube.apply(hello())[0] == "created"
        assert kube.server_side_apply is False
        assert kube.apply(hello())[0] == "unchanged"
        action, changed = kube.apply(hello(image="ghcr.io/knative/helloworld-go:v2"))
    assert action == "configured" and changed["metadata"]["generation"] == 2
    methods = [(method, content_type) for method, _, _, content_type in recorder.requests]
    assert methods.count(("PATCH", APPLY_PATCH)) == 1  # asked once, then not again
    assert ("POST", "application/json") in methods and ("PUT", "application/json") in methods


def test_merge_patch_changes_the_object(kube: KubeClient) -> None:
    kube.apply(hello())
    patched = kube.patch(SERVICES, "default", "hello", {"metadata": {"labels": {"tier": "gold"}}})
    assert patched["metadata"]["labels"] == {"team": "ml", "tier": "gold"}


# ---- validation before sending -----------------------------------------------------------------


def _traffic_90(obj: dict[str, Any]) -> dict[str, Any]:
    obj["spec"]["traffic"] = [{"latestRevision": True, "percent": 90}]
    return obj


INVALID = [
    pytest.param(
        hello(imagee="typo"),
        r"spec\.template\.spec\.containers\[0\]: unknown field\(s\) imagee",
        id="knative-unknown-field",
    ),
    pytest.param(_traffic_90(hello()), r"traffic percents sum to 90", id="knative-rule"),
    pytest.param(
        {
            **SKLEARN_IRIS,
            "spec": {"predictor": {**SKLEARN_IRIS["spec"]["predictor"], "minReplicas": "two"}},
        },
        r"spec\.predictor\.minReplicas: 'two' is not of type 'integer'",
        id="kserve-wrong-type",
    ),
]


@pytest.mark.parametrize("obj, message", INVALID)
@pytest.mark.parametrize("verb", ["apply", "create", "replace"])
def test_a_schema_invalid_object_is_refused_before_anything_is_sent(
    kube: KubeClient, recorder: Recorder, verb: str, obj: dict[str, Any], message: str
) -> None:
    obj = copy.deepcopy(obj)
    kind = SERVICES if obj["kind"] == "Service" else ISVCS
    call: dict[str, Callable[[], Any]] = {
        "apply": lambda: kube.apply(obj),
        "create": lambda: kube.create(kind, obj),
        "replace": lambda: kube.replace(kind, obj),
    }
    with pytest.raises(Invalid, match=message) as refused:
        call[verb]()
    assert refused.value.message.startswith(
        f'{obj["kind"]} "{obj["metadata"]["name"]}" is invalid: '
    )
    assert recorder.requests == []


def test_the_local_planes_one_container_limit_is_left_to_the_cluster(
    kube: KubeClient, recorder: Recorder
) -> None:
    obj = hello()
    obj["spec"]["template"]["spec"]["containers"].append(
        {"name": "sidecar", "image": "example/sidecar"}
    )
    validate(SERVICES, obj)  # Knative runs sidecars: nothing to refuse before sending
    # this test's API server is the local plane's control API, which cannot run two
    with pytest.raises(Invalid, match="the local plane runs exactly one"):
        kube.apply(obj)
    assert recorder.requests  # it was sent


def test_a_merge_patch_that_would_make_the_object_invalid_is_not_sent(
    kube: KubeClient, recorder: Recorder
) -> None:
    kube.apply(hello())
    sent = len(recorder.requests)
    with pytest.raises(Invalid, match="traffic percents sum to 90"):
        kube.patch(SERVICES, "default", "hello", _traffic_90({"spec": {}}))
    assert [r[0] for r in recorder.requests[sent:]] == ["GET"]  # read, never patched


# ---- Status failures ---------------------------------------------------------------------------


def _create_twice(kube: KubeClient) -> None:
    kube.create(SERVICES, hello())
    kube.create(SERVICES, hello())


def _replace_stale(kube: KubeClient) -> None:
    _, created = kube.apply(hello())
    kube.apply(hello(image="ghcr.io/knative/helloworld-go:v2"))
    kube.replace(SERVICES, created)  # carries the first resourceVersion


def _traffic_short_of_100_percent(kube: KubeClient) -> None:
    # Valid by the schema (the client lets it through); Knative's webhook rule refuses it.
    obj = hello()
    obj["spec"]["traffic"] = [{"latestRevision": True, "percent": 90}]
    kube.create(SERVICES, obj)


STATUS_FAILURES = [
    pytest.param(
        lambda kube: kube.get(SERVICES, "default", "nope"),
        NotFound,
        404,
        'services.serving.knative.dev "nope" not found in namespace default',
        id="NotFound",
    ),
    pytest.param(_create_twice, AlreadyExists, 409, '"hello" already exists', id="AlreadyExists"),
    pytest.param(_replace_stale, Conflict, 409, "has been modified", id="Conflict"),
    pytest.param(
        _traffic_short_of_100_percent,
        Invalid,
        422,
        "spec.traffic percents sum to 90, they must sum to 100",
        id="Invalid",
    ),
]


@pytest.mark.parametrize("call, error, code, message", STATUS_FAILURES)
def test_status_failures_become_the_api_errors_of_the_local_plane(
    kube: KubeClient,
    call: Callable[[KubeClient], Any],
    error: type[ApiError],
    code: int,
    message: str,
) -> None:
    with pytest.raises(error, match=message) as raised:
        call(kube)
    assert raised.value.code == code and raised.value.reason == error.reason


def test_a_refused_token_is_an_api_error_with_the_servers_reason(
    tmp_path: Path, server: str
) -> None:
    kube = KubeClient.from_kubeconfig(write_kubeconfig(tmp_path / "bad", server, token="wrong"))
    with pytest.raises(ApiError, match="needs 'Authorization: Bearer <token>'") as raised:
        kube.list(SERVICES, "default")
    assert (raised.value.reason, raised.value.code) == ("Unauthorized", 401)


def test_an_unreachable_server_is_an_api_error_naming_it(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    kube = KubeClient.from_kubeconfig(write_kubeconfig(tmp_path / "kubeconfig", url))
    with pytest.raises(ApiError, match=f"cannot reach the Kubernetes API at {url}"):
        kube.list(SERVICES, "default")


# ---- one interface, two targets ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "list", "create", "replace", "patch", "delete", "apply"])
def test_the_kube_client_has_the_local_clients_methods(method: str) -> None:
    assert inspect.signature(getattr(KubeClient, method)) == inspect.signature(
        getattr(Client, method)
    )
    assert hasattr(ResourceClient, method)


def test_client_for_picks_the_target(kubeconfig: Path, server: str) -> None:
    local = client_for("local", api="http://127.0.0.1:1")
    assert isinstance(local, Client) and local.base_url == "http://127.0.0.1:1"
    kube = client_for("kube", kubeconfig=kubeconfig)
    assert isinstance(kube, KubeClient) and kube.base_url == server
    by_context = client_for("local", context="elsewhere", kubeconfig=kubeconfig)
    assert isinstance(by_context, KubeClient) and by_context.namespace == "ml"


def test_client_for_the_kube_target_ignores_the_local_planes_address(kubeconfig: Path) -> None:
    # The CLI fills --api from $KNSERVE_API, which says nothing about a cluster.
    kube = client_for("kube", api="http://127.0.0.1:1", kubeconfig=kubeconfig)
    assert isinstance(kube, KubeClient) and kube.base_url != "http://127.0.0.1:1"


def test_client_for_an_unknown_target_lists_the_targets() -> None:
    with pytest.raises(ApiError, match="unknown target 'cloud'; use one of: local, kube"):
        client_for("cloud")


def test_the_cli_acts_on_a_cluster_with_target_kube(
    kubeconfig: Path, store: Store, tmp_path: Path
) -> None:
    """`--target kube` sends the same YAML to the kubeconfig's cluster (here: a loopback API)."""
    import os
    import subprocess
    import sys

    import yaml

    path = tmp_path / "hello.yaml"
    path.write_text(yaml.safe_dump(hello()))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KNSERVE_API": "http://127.0.0.1:9"}

    def knserve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "knserve.knative.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    applied = knserve("apply", "-f", str(path), "--target", "kube")
    assert applied.returncode == 0, applied.stderr
    assert store.find(SERVICES, "default", "hello") is not None
    listed = knserve("service", "list", "--target", "kube")
    assert listed.returncode == 0, listed.stderr
    assert "hello" in listed.stdout
    local = knserve("service", "list")  # the local target: nothing listens on port 9
    assert local.returncode == 1
    assert "is `knserve up` running?" in local.stderr
