"""The router's side of async chains over real HTTP: a request is published to the broker
(`K_SINK`) and answered 202; a delivered step event runs one step and is answered with the next
event, or the response event; a step that cannot be reached is a 502 the broker retries. The
whole chain through the plane's real broker is tests/eventing/test_graph_chain_plane.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from net_fixtures import free_port, serve_in_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from knserve.knative.router.app import RouterApp

received: list[dict[str, Any]] = []


async def broker(request: Request) -> Response:
    received.append({"headers": dict(request.headers), "event": await request.json()})
    return Response(status_code=202)


async def predict(request: Request) -> Response:
    body = await request.json()
    return JSONResponse({"predictions": [len(body.get("instances", []))]})


async def refuse(request: Request) -> Response:
    return JSONResponse({"error": "bad input"}, status_code=400)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/broker", broker, methods=["POST"]),
            Route("/predict", predict, methods=["POST"]),
            Route("/refuse", refuse, methods=["POST"]),
        ]
    )
    with serve_in_thread(app) as url:
        yield url


def router(upstream: str, *steps: dict[str, Any]) -> Iterator[str]:
    spec = {"nodes": {"root": {"routerType": "Sequence", "steps": list(steps)}}}
    app = RouterApp(spec, sink=f"{upstream}/broker", graph=("ml", "chain"))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def three(upstream: str) -> Iterator[str]:
    yield from router(
        upstream,
        {"serviceUrl": f"{upstream}/predict"},
        {"serviceUrl": f"{upstream}/predict", "data": "$response"},
        {"serviceUrl": f"{upstream}/predict", "data": "$request"},
    )


def deliver(url: str, event: dict[str, Any]) -> httpx.Response:
    """The broker's delivery, in binary mode as the plane's dispatcher sends it."""
    headers = {f"ce-{k}": str(v) for k, v in event.items() if k != "data"}
    headers["content-type"] = "application/json"
    return httpx.post(url, headers=headers, content=json.dumps(event["data"]))


def test_a_request_is_published_and_answered_202(three: str, upstream: str) -> None:
    received.clear()
    accepted = httpx.post(three, json={"instances": [[1], [2]]})
    assert accepted.status_code == 202
    receipt = accepted.json()
    assert receipt["broker"] == f"{upstream}/broker"
    assert receipt["type"] == "dev.knserve.inferencegraph.response"
    [published] = received
    assert published["headers"]["content-type"] == "application/cloudevents+json"
    event = published["event"]
    assert event["type"] == "dev.knserve.inferencegraph.step"
    assert event["source"] == "/apis/serving.kserve.io/v1alpha1/namespaces/ml/inferencegraphs/chain"
    assert (event["knservegraph"], event["knservestep"]) == ("chain", "0")
    assert event["knservechain"] == receipt["id"]
    assert event["data"] == {"request": {"instances": [[1], [2]]}, "response": None}


def test_each_delivery_runs_one_step_and_replies_with_the_next(three: str) -> None:
    received.clear()
    httpx.post(three, json={"instances": [[1], [2]]})
    event = received[0]["event"]
    for step in ("1", "2"):
        reply = deliver(three, event)
        assert reply.status_code == 200
        assert reply.headers["content-type"] == "application/cloudevents+json"
        event = reply.json()
        assert (event["type"], event["knservestep"]) == ("dev.knserve.inferencegraph.step", step)
    # step 1 got step 0's answer ($response), which has no instances; its answer travels on
    assert event["data"]["response"] == {"predictions": [0]}
    assert event["data"]["request"] == {"instances": [[1], [2]]}
    final = deliver(three, event).json()
    assert final["type"] == "dev.knserve.inferencegraph.response"
    assert final["knservestatus"] == "200"
    assert final["data"] == {"predictions": [2]}  # step 2 took the request ($request)
    assert final["id"] == f"{final['knservechain']}-response"


def test_an_unreachable_step_is_retried_by_the_broker(upstream: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}/predict"
    for url in router(upstream, {"serviceUrl": dead}):
        received.clear()
        httpx.post(url, json={"instances": []})
        answer = deliver(url, received[0]["event"])
        assert answer.status_code == 502
        assert answer.json()["cause"].startswith(f'Post "{dead}"')


def test_a_failed_hard_step_ends_the_chain_with_its_answer(upstream: str) -> None:
    steps = [
        {"serviceUrl": f"{upstream}/refuse", "dependency": "Hard"},
        {"serviceUrl": f"{upstream}/predict"},
    ]
    for url in router(upstream, *steps):
        received.clear()
        httpx.post(url, json={"instances": []})
        final = deliver(url, received[0]["event"]).json()
        assert final["type"] == "dev.knserve.inferencegraph.response"
        assert (final["knservestatus"], final["data"]) == ("400", {"error": "bad input"})


def test_an_async_graph_needs_a_json_request(three: str) -> None:
    refused = httpx.post(three, content=b"not json")
    assert refused.status_code == 400
    assert refused.json()["cause"] == "an async graph takes a JSON request body"
