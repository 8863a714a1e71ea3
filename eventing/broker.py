"""The broker on the local plane: ingress, durable log, dispatcher and controller, wired.

The ingress listens on its own loopback port (`knserve up --broker-port`), at Knative's path
`/{namespace}/{broker}`, so accepting an event never shares the gateway's hot path. Deliveries to
`*.{domain}` subscribers (Knative Services, InferenceServices) go through the gateway as an HTTP
proxy, the way cluster DNS would route them, so a scaled-to-zero predictor is woken by the
activator like any caller would wake it.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx

from knserve.eventing.controller import SERVICE, EventingController
from knserve.eventing.dispatcher import Dispatcher
from knserve.eventing.eventlog import EventLog
from knserve.eventing.ingress import Ingress
from knserve.eventing.ingress_server import IngressServer
from knserve.eventing.message_sender import LeanSender
from knserve.knative.apiserver.store import Store

# Knative's multi-tenant broker ingress, `http://broker-ingress.knative-eventing.svc.cluster.local/
# {namespace}/{broker}`: the gateway routes this name to the plane's ingress, so a logger or sink
# URL written for a cluster works unchanged on the local plane.
INGRESS_NAMESPACE = "knative-eventing"
INGRESS_NAME = "broker-ingress"


class BrokerPlane:
    """Everything the local plane needs for Brokers and Triggers."""

    def __init__(
        self, store: Store, data_dir: Path, host: str, port: int, gateway_url: str, domain: str
    ) -> None:
        self.store = store
        self.url = f"http://{host}:{port}"
        self.log = EventLog(Path(data_dir) / "events.db")
        self.client = httpx.AsyncClient(
            trust_env=False,  # the plane's own HTTP_PROXY must not apply here
            mounts={f"http://*.{domain}": httpx.AsyncHTTPTransport(proxy=gateway_url)},
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64),
        )
        # plain http:// deliveries on lean keep-alive connections (the same gateway routing);
        # httpx for the rest (HTTPS …)
        sender = LeanSender(proxies={f".{domain}": gateway_url})
        self.dispatcher = Dispatcher(self.log, self.client, sender=sender)
        self.controller = EventingController(
            store,
            self.dispatcher,
            self.log,
            self._service_url,
            lambda namespace, name: f"{self.url}/{namespace}/{name}",
        )
        self.ingress = Ingress(
            self.log, self.controller.broker_exists, on_accepted=self.dispatcher.wake
        )
        self.dispatcher.reply_to = self.ingress.accept
        self.server = IngressServer(self.ingress, host, port)

    def _service_url(self, namespace: str, name: str) -> str | None:
        svc = self.store.find(SERVICE, namespace, name)
        return ((svc or {}).get("status") or {}).get("url")

    async def run(self, stop: asyncio.Event) -> None:
        """Serve the ingress and reconcile Brokers and Triggers until `stop`; then drain."""
        await self.server.start()
        controller = asyncio.create_task(self.controller.run(), name="eventing-controller")
        try:
            await stop.wait()
        finally:
            await self.server.stop()  # stop accepting first, answering what was received
            controller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await controller
            await self.dispatcher.close()  # releases claimed events for the next start
            await self.client.aclose()
            self.log.close()
