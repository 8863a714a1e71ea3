"""The router as a process (`python -m knserve.knative.router --graph-json …`, as the plane runs
KServe's router image) in front of real HTTP step services on loopback: KServe's answers, error
bodies and status codes, propagated headers, `routerTimeouts.serviceClient`, readiness."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from net_fixtures import ServerProcess, free_port, serve_in_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


def step_services() -> Starlette:
    """`/echo` answers the body and the headers it got; `/fail` 503; `/slow` after 2 s;
    `/text` plain text; `/predict` adds predictions."""

    async def echo(request: Request) -> Response:
        return JSONResponse({"body": await request.json(), "headers": dict(request.headers)})

    async def fail(request: Request) -> Response:
        return JSONResponse({"error": "model down"}, status_code=503)

    async def slow(request: Request) -> Response:
        await asyncio.sleep(2)
        return JSONResponse({"late": True})

    async def text(request: Request) -> Response:
        return PlainTextResponse("not json")

    async def predict(request: Request) -> Response:
        return JSONResponse({"predictions": [len(json.dumps(await request.json()))]})

    return Starlette(
        routes=[
            Route(f"/{name}", fn, methods=["POST"])
            for name, fn in (
                ("echo", echo),
                ("fail", fail),
                ("slow", slow),
                ("text", text),
                ("predict", predict),
            )
        ]
    )


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with serve_in_thread(step_services()) as url:
        yield url


@pytest.fixture
def router(
    spawn: Callable[..., ServerProcess],
) -> Callable[..., str]:
    def start(spec: dict[str, Any], env: dict[str, str] | None = None) -> str:
        port = free_port()
        process = spawn(
            [sys.executable, "-m", "knserve.knative.router", "--graph-json", json.dumps(spec)],
            env={"PORT": str(port), **(env or {})},
        )
        url = f"http://127.0.0.1:{port}"
        process.wait_http(f"{url}/readyz")
        return url

    return start


def sequence(*steps: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"nodes": {"root": {"routerType": "Sequence", "steps": list(steps)}}, **spec}


def test_a_sequence_answers_with_the_last_step_and_json_content_type(
    router: Callable[..., str], upstream: str
) -> None:
    url = router(
        sequence(
            {"serviceUrl": f"{upstream}/predict"},
            {"serviceUrl": f"{upstream}/echo", "data": "$response"},
        )
    )
    answer = httpx.post(f"{url}/any/path", json={"instances": [[1, 2]]})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["body"] == {"predictions": [len('{"instances": [[1, 2]]}')]}
    # KServe sets a JSON content type on each step's request
    assert answer.json()["headers"]["content-type"] == "application/json"


def test_only_the_configured_headers_are_propagated(
    router: Callable[..., str], upstream: str
) -> None:
    url = router(
        sequence({"serviceUrl": f"{upstream}/echo"}),
        env={"PROPAGATE_HEADERS": "Authorization,^X-Tenant-.*"},
    )
    answer = httpx.post(
        url,
        json={},
        headers={"authorization": "Bearer t", "x-tenant-id": "42", "x-other": "no"},
    )
    headers = answer.json()["headers"]
    assert headers["authorization"] == "Bearer t" and headers["x-tenant-id"] == "42"
    assert "x-other" not in headers


def test_a_hard_step_failure_is_the_graphs_answer(
    router: Callable[..., str], upstream: str
) -> None:
    url = router(
        sequence(
            {"serviceUrl": f"{upstream}/fail", "dependency": "Hard"},
            {"serviceUrl": f"{upstream}/echo"},
        )
    )
    answer = httpx.post(url, json={})
    assert (answer.status_code, answer.json()) == (503, {"error": "model down"})


def test_an_unreachable_step_is_kserves_500_error_body(
    router: Callable[..., str], upstream: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/predict"
    url = router(sequence({"serviceUrl": dead}))
    answer = httpx.post(url, json={})
    assert answer.status_code == 500
    body = answer.json()
    assert body["error"] == "Failed to process request"
    assert body["cause"].startswith(f'Post "{dead}": ')


def test_service_client_timeout_bounds_each_step(router: Callable[..., str], upstream: str) -> None:
    url = router(sequence({"serviceUrl": f"{upstream}/slow"}, routerTimeouts={"serviceClient": 1}))
    answer = httpx.post(url, json={}, timeout=10)
    assert answer.status_code == 500
    assert answer.json()["cause"].startswith(f'Post "{upstream}/slow"')


def test_a_text_answer_is_not_labelled_json(router: Callable[..., str], upstream: str) -> None:
    url = router(sequence({"serviceUrl": f"{upstream}/text"}))
    answer = httpx.post(url, json={})
    assert answer.text == "not json"
    assert answer.headers["content-type"].startswith("text/plain")


def test_switch_without_a_match_and_bad_json(router: Callable[..., str], upstream: str) -> None:
    spec = {
        "nodes": {
            "root": {
                "routerType": "Switch",
                "steps": [{"serviceUrl": f"{upstream}/echo", "condition": "instances.#(x>1)"}],
            }
        }
    }
    url = router(spec)
    assert httpx.post(url, json={"instances": [{"x": 2}]}).status_code == 200
    for body in (b'{"instances": [{"x": 0}]}', b"{not json"):
        missed = httpx.post(url, content=body)
        assert missed.status_code == 404
        assert missed.json()["cause"] == "None of the routes matched with the switch condition"


def test_a_bad_graph_json_stops_the_router_with_a_clear_error(
    spawn: Callable[..., ServerProcess],
) -> None:
    process = spawn([sys.executable, "-m", "knserve.knative.router", "--graph-json", "{oops"])
    assert process.proc.wait(30) == 2
    assert "--graph-json" in process.log() and "not JSON" in process.log()


async def test_steps_go_through_http_proxy_unless_no_proxy_names_the_host() -> None:
    from knserve.knative.router.app import StepTransports

    routes = StepTransports(
        {"HTTP_PROXY": "http://127.0.0.1:8080", "NO_PROXY": "127.0.0.1,::1,.internal"}
    )
    try:
        assert routes.proxied is not None
        for url, proxied in (
            ("http://iris.default.svc.cluster.local/v1/models/iris:predict", True),
            ("http://127.0.0.1:9000/x", False),
            ("http://[::1]:9000/x", False),
            ("http://models.internal/x", False),
            ("https://iris.default.localhost/x", False),
        ):
            chosen = routes.for_url(httpx.URL(url))
            assert (chosen is routes.proxied) is proxied, url
    finally:
        await routes.aclose()
    everything = StepTransports({"HTTP_PROXY": "http://127.0.0.1:8080", "NO_PROXY": "*"})
    assert everything.proxied is None
    await everything.aclose()
