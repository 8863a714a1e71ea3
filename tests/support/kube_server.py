"""A Kubernetes-API server on loopback for the kube target's tests: the local plane's control API.

`serve_in_thread` runs an ASGI app under uvicorn on 127.0.0.1 in a thread of its own (the
`kubernetes` client and kopf both do real HTTP); `write_kubeconfig` points a kubeconfig at it with
a bearer-token user, as a cluster's would.

`with_core_discovery` adds the two read-only discovery documents of the core API group that kopf
reads at start-up and that the control API does not serve yet (`GET /api`, `GET /api/v1`): kopf
scans them for `namespaces` and `events` even when it watches only custom resources. Nothing else
is added; every other request reaches the control API unchanged.

`Recorder` keeps the method, path, query and content type of every request, so a test can say
what a client sent. `Switchboard` lets one server (uvicorn takes ~0.15 s to stop) serve a module's
tests while each test plugs in an app over its own store, so the tests still share no state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from net_fixtures import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

TOKEN = "loopback-token"


@contextmanager
def serve_in_thread(app: Any, timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` on a free loopback port for the duration; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.005)  # another thread's flag; nothing to await
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def write_kubeconfig(
    path: Path, server: str, token: str = TOKEN, namespace: str = "default"
) -> Path:
    """A kubeconfig with one context, `loopback`, and a second one, `elsewhere`, in namespace ml."""
    path.write_text(
        f"""\
apiVersion: v1
kind: Config
clusters:
- name: loopback
  cluster: {{server: "{server}"}}
users:
- name: tester
  user: {{token: "{token}"}}
contexts:
- name: loopback
  context: {{cluster: loopback, user: tester, namespace: {namespace}}}
- name: elsewhere
  context: {{cluster: loopback, user: tester, namespace: ml}}
current-context: loopback
"""
    )
    return path


def with_core_discovery(app: Any) -> Starlette:
    """`app` plus `GET /api` and `GET /api/v1` (see the module docstring)."""

    async def api_versions(request: Request) -> JSONResponse:
        return JSONResponse({"kind": "APIVersions", "versions": ["v1"]})

    async def core_v1(request: Request) -> JSONResponse:
        resources = [
            {"name": "namespaces", "singularName": "namespace", "namespaced": False,
             "kind": "Namespace", "verbs": ["get", "list", "watch"]},
            {"name": "events", "singularName": "event", "namespaced": True,
             "kind": "Event", "verbs": ["create"]},
        ]  # fmt: skip
        return JSONResponse(
            {"kind": "APIResourceList", "groupVersion": "v1", "resources": resources}
        )

    return Starlette(
        routes=[Route("/api", api_versions), Route("/api/v1", core_v1), Mount("/", app)]
    )


@dataclass
class Recorder:
    """ASGI middleware that records (method, path, query, content type) of every request."""

    app: Any
    requests: list[tuple[str, str, str, str]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            self.requests.append((scope["method"], scope["path"], scope["query_string"].decode(),
                                  headers.get(b"content-type", b"").decode()))  # fmt: skip
        await self.app(scope, receive, send)


@dataclass
class Switchboard:
    """ASGI app that hands every request to the app currently plugged in."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            raise RuntimeError("no app is plugged into the switchboard")
        await self.app(scope, receive, send)
