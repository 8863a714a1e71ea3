"""A Kubernetes-API server on loopback for the kube target's tests: the local plane's control API.

The tests serve it with `net_fixtures.serve_in_thread` (the `kubernetes` client and kopf both do
real HTTP); `write_kubeconfig` points a kubeconfig at it with a bearer-token user, as a cluster's
would.

`Recorder` keeps the method, path, query and content type of every request, so a test can say
what a client sent. `Switchboard` lets one server (uvicorn takes ~0.15 s to stop) serve a module's
tests while each test plugs in an app over its own store, so the tests still share no state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOKEN = "loopback-token"


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


@dataclass
class Recorder:
    """ASGI middleware that records (method, path, query, content type) of every request."""

    app: Any
    requests: list[tuple[str, str, str, str]] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            self.requests.append(
                (
                    scope["method"],
                    scope["path"],
                    scope["query_string"].decode(),
                    headers.get(b"content-type", b"").decode(),
                )
            )
        await self.app(scope, receive, send)


@dataclass
class Switchboard:
    """ASGI app that hands every request to the app currently plugged in."""

    app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.app is None:
            raise RuntimeError("no app is plugged into the switchboard")
        await self.app(scope, receive, send)
