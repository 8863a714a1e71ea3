"""Fixtures for the knative tests: the InferenceService controller over a real SQLite store
(`store`, `controller`) and the routes it programs (`routes`); for the kopf operator's tests, a
Kubernetes-API server on loopback (the local plane's control API behind a `switchboard`, one
fresh store per test through `kubeconfig`) and a client of it (`kube`). A module's own fixture of
the same name (test_kube.py's `store`, `switchboard`, `kubeconfig`, `kube`) wins over these."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_server import TOKEN, Switchboard, write_kubeconfig
from net_fixtures import serve_in_thread

from knserve.knative.apiserver.server import create_app
from knserve.knative.apiserver.store import Store
from knserve.knative.kserve.controller import InferenceServiceController, IsvcRoute
from knserve.knative.kube.client import KubeClient


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "state.db")
    yield store
    store.close()


@pytest.fixture
def routes() -> dict[tuple[str, str], tuple[IsvcRoute, ...]]:
    return {}


@pytest.fixture
def controller(
    store: Store, routes: dict[tuple[str, str], tuple[IsvcRoute, ...]]
) -> InferenceServiceController:
    def changed(namespace: str, name: str, new: tuple[IsvcRoute, ...]) -> None:
        routes[(namespace, name)] = new

    return InferenceServiceController(store, routes_changed=changed)


@pytest.fixture(scope="module")
def switchboard() -> Iterator[tuple[Switchboard, str]]:
    board = Switchboard()
    with serve_in_thread(board) as url:
        yield board, url


@pytest.fixture
def kubeconfig(tmp_path: Path, switchboard: tuple[Switchboard, str]) -> Iterator[Path]:
    board, url = switchboard
    store = Store(tmp_path / "state.db")
    board.app = create_app(store, token=TOKEN)
    yield write_kubeconfig(tmp_path / "kubeconfig", url)
    board.app = None
    store.close()


@pytest.fixture
def kube(kubeconfig: Path) -> Iterator[KubeClient]:
    client = KubeClient.from_kubeconfig(kubeconfig)
    yield client
    client.close()
