"""Fixtures for the knative tests: the InferenceService controller over a real SQLite store
(`store`, `controller`) and the routes it programs (`routes`); for the kopf operator's tests, a
Kubernetes-API server on loopback (the local plane's control API behind a `switchboard`, one
fresh store per test through `kubeconfig`) and a client of it (`kube`). A module's own fixture of
the same name (test_kube.py's `store`, `switchboard`, `kubeconfig`, `kube`) wins over these.

For the gateway's tests against real replicas: `endpoints` (the gateway's endpoint source), a
started `gateway` on it, a `client` of that gateway sending iris's Host, and `start_replica`, which
starts a named `Replica` (tests/support/replica_fixtures.py) on a loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from gateway_fixtures import HOST
from kube_server import TOKEN, Switchboard, write_kubeconfig
from net_fixtures import listening_socket, serve_in_thread
from replica_fixtures import Endpoints, Replica

from knserve.knative.activator.gateway import Gateway
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


@pytest.fixture
async def start_replica() -> AsyncIterator[Callable[[str], Awaitable[Replica]]]:
    replicas: list[Replica] = []

    async def start(name: str) -> Replica:
        sock, port = listening_socket()  # bound first: no waiting for uvicorn to start
        replica = Replica(name, port)
        config = uvicorn.Config(
            replica.app,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
        )
        replica.server = uvicorn.Server(config)
        replica.task = asyncio.create_task(replica.server.serve(sockets=[sock]))
        replicas.append(replica)
        return replica

    yield start
    for replica in replicas:
        replica.gate.set()
        assert replica.server is not None and replica.task is not None
        replica.server.should_exit = True
        await replica.task


@pytest.fixture
def endpoints() -> Endpoints:
    return Endpoints()


@pytest.fixture
async def gateway(endpoints: Endpoints) -> AsyncIterator[Gateway]:
    gw = Gateway(endpoints)
    await gw.start("127.0.0.1", 0)
    yield gw
    await gw.close(grace=1.0)


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.port}", headers={"Host": HOST}, timeout=10.0
    ) as c:
        yield c
