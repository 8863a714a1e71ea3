"""A revision deleted while a Route still names it is answered at once, never held.

On a cluster the Route keeps its last traffic (AllTrafficAssigned=False, RevisionMissing) and
Knative's activator answers a revision its lister no longer has with 404, "Error getting active
endpoint: revision.serving.knative.dev "{name}" not found". The gateway does the same, for the
tag host, the split and the requests it held when the revision went away.
"""

from __future__ import annotations

import asyncio

import httpx
from gateway_fixtures import HOST, event_loop_policy, raw_upstream, routed_gateway

from knserve.knative.activator.gateway import TrafficTarget

__all__ = ["event_loop_policy"]  # a fixture: every test runs on asyncio's loop and on uvloop
OLD_HOST = "old-iris.default.localhost"
NOT_FOUND = 'Error getting active endpoint: revision.serving.knative.dev "iris-2" not found'
TARGETS = (TrafficTarget("iris-1", 100), TrafficTarget("iris-2", 0, tag="old"))


async def answer_ok(
    head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    await writer.drain()


async def test_a_tag_host_of_a_deleted_revision_gets_404_at_once_until_it_is_made_again() -> None:
    async with (
        raw_upstream(answer_ok) as upstream,
        # held requests would wait for their 30 s timeoutSeconds: the client gives up after 5
        routed_gateway(upstream.endpoint, targets=TARGETS, hold_unready=True) as gateway,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=5) as client,
    ):
        assert (await client.get("/", headers={"Host": OLD_HOST})).text == "ok"

        # the replicas are stopped after the gateway is told, as the controller does it
        gateway.remove_revision("default", "iris-2")
        gone = await client.get("/", headers={"Host": OLD_HOST})
        assert gone.status_code == 404
        assert gone.text.startswith(NOT_FOUND + ": route default/iris still sends this request")
        assert "(tag 'old') to Revision default/iris-2, which was deleted" in gone.text
        assert "`knserve route describe iris -n default` says RevisionMissing" in gone.text
        assert (await client.get("/", headers={"Host": HOST})).text == "ok"  # the rest is served

        gateway.set_revision("default", "iris-2", 0, 30)  # a revision of that name again
        assert (await client.get("/", headers={"Host": OLD_HOST})).text == "ok"


async def test_a_request_held_for_a_revision_is_answered_when_it_is_deleted() -> None:
    async with (
        routed_gateway(targets=TARGETS, hold_unready=True) as gateway,  # no replica: held
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=5) as client,
    ):
        held = asyncio.create_task(client.get("/", headers={"Host": OLD_HOST}))
        async with asyncio.timeout(5):
            while gateway.stats("default", "iris-2").queued != 1:
                await asyncio.sleep(0.002)  # polling the gateway's counter, which has no event
        gateway.remove_revision("default", "iris-2")
        answer = await held
    assert answer.status_code == 404
    assert answer.text == (
        f"{NOT_FOUND}: Revision default/iris-2 was deleted while the request waited for a "
        "replica of it\n"
    )
