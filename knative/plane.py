"""The local serving plane in one process: store, control API, controller, supervisor, gateway.

`knserve up` builds a `Plane` and runs it until SIGINT/SIGTERM. State lives in SQLite under the
data dir, so a restart brings every object back and the controller, reconciling from the store,
starts their revisions again. Stopping drains: the gateway stops accepting, replicas finish what
they hold, then they are stopped.

Replicas get `HTTP_PROXY` pointing at the gateway (and `NO_PROXY` for loopback addresses): a
transformer that calls `http://{isvc}-predictor.{namespace}.localhost/…` reaches the predictor
through the gateway, the way cluster DNS would route it, although this machine cannot resolve
such names.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from knserve.eventing.broker import INGRESS_NAME, INGRESS_NAMESPACE, BrokerPlane
from knserve.eventing.metrics import BrokerCollector
from knserve.knative.activator.gateway import Gateway, SupervisorEndpoints
from knserve.knative.activator.request_metrics import GatewayCollector
from knserve.knative.activator.telemetry import Telemetry
from knserve.knative.activator.traffic import RouteSpec, TrafficTarget
from knserve.knative.apiserver.features import DEFAULTS as FEATURE_DEFAULTS
from knserve.knative.apiserver.features import TAG_HEADER_BASED_ROUTING, is_enabled
from knserve.knative.apiserver.server import EmbeddedServer, create_app
from knserve.knative.apiserver.store import Store
from knserve.knative.autoscaler.kpa import AutoscalerConfig
from knserve.knative.autoscaler.metrics import PlaneCollector
from knserve.knative.autoscaler.multiscaler import Multiscaler
from knserve.knative.kserve.controller import InferenceServiceController
from knserve.knative.kserve.graph_controller import InferenceGraphController
from knserve.knative.kserve.trained_model_controller import TrainedModelController
from knserve.knative.monitoring.dashboard import dashboard_routes, run_sampler
from knserve.knative.monitoring.plane_metrics import metrics_routes
from knserve.knative.monitoring.samples import Reading, SampleRing
from knserve.knative.monitoring.targets import targets_route
from knserve.knative.serving.controller import REVISION, Controller
from knserve.knative.serving.resources import CONFIGURATION_LABEL, SERVICE_LABEL
from knserve.knative.supervisor.launcher import Launcher
from knserve.knative.supervisor.port_map import GATEWAY_ENV
from knserve.knative.supervisor.replicas import Supervisor
from knserve.knative.supervisor.templates import DEFAULT_BUDGET_BYTES, TemplateCollector
from knserve.runtime.storage import pvc_env_name
from knserve.runtime.tracing import flush_all, tracer

log = logging.getLogger("knserve.plane")


@dataclass(frozen=True)
class PlaneSettings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    api_port: int = 8081
    domain: str = "localhost"
    token: str | None = None
    autoscaler: AutoscalerConfig = field(default_factory=AutoscalerConfig)
    zygote: bool = True  # fork replicas from a warm template process
    example: bool = False  # serve KServe's sklearn iris example (make up)
    broker_port: int = 8082  # the broker ingress, /{namespace}/{broker}
    # Knative's config-features flags (knative/apiserver/features.py); read with features.is_enabled().
    features: Mapping[str, str] = field(default_factory=lambda: dict(FEATURE_DEFAULTS))
    # persistent volume claims as local folders, for storageUri pvc://CLAIM/PATH (`--pvc`)
    pvc: Mapping[str, Path] = field(default_factory=dict)
    # The gateway's access log, a line per request (Knative's logging.enable-request-log).
    access_log: bool = False
    log_format: str = "text"  # the plane's and its replicas' (knserve.runtime.logformat)
    # what the revisions' warm templates (their models loaded) may hold, USS; 0: none
    template_budget_bytes: int = DEFAULT_BUDGET_BYTES


class Plane:
    def __init__(self, settings: PlaneSettings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(settings.data_dir / "state.db", autoscaler=settings.autoscaler)
        proxy = f"http://{settings.host}:{settings.port}"
        loopback = settings.host == "127.0.0.1"  # where the port map shim sends service names
        self.launcher = Launcher(
            settings.data_dir / "run", settings.zygote, settings.template_budget_bytes
        )
        self.supervisor = Supervisor(
            settings.data_dir / "logs",
            launcher=self.launcher,
            extra_env={
                "HTTP_PROXY": proxy,
                "http_proxy": proxy,
                "NO_PROXY": "127.0.0.1,::1",
                "no_proxy": "127.0.0.1,::1",
                # read by the storage initializer (and by knserve.runtime given a pvc:// URI)
                **{pvc_env_name(claim): str(folder) for claim, folder in settings.pvc.items()},
                "KNSERVE_LOG_FORMAT": settings.log_format,
                # for clients that ignore HTTP_PROXY (KServe's predictor client): the port map
                # shim resolves the route domain's names to the gateway, as cluster DNS would
                **({GATEWAY_ENV: f"{settings.domain}={settings.port}"} if loopback else {}),
            },
        )
        ingress = (INGRESS_NAMESPACE, INGRESS_NAME)
        self.gateway = Gateway(
            SupervisorEndpoints(
                self.supervisor, {ingress: [f"{settings.host}:{settings.broker_port}"]}
            ),
            settings.domain,
            hold_unready=True,
            tag_header_routing=is_enabled(settings.features, TAG_HEADER_BASED_ROUTING),
            telemetry=Telemetry(tracer("knserve-gateway"), settings.access_log),
        )
        # Knative's broker-ingress name, served by the plane's ingress behind the gateway.
        self.gateway.set_revision(*ingress, container_concurrency=0, timeout_seconds=300)
        self.gateway.set_route(RouteSpec(*ingress, (TrafficTarget(INGRESS_NAME, 100),)))
        self.supervisor.subscribe(self.gateway.endpoints_changed)
        self.scaler = Multiscaler(self.supervisor, self.gateway, settings.autoscaler)
        self.gateway.on_demand = self.scaler.on_demand  # the activator wakes revisions at zero
        self.trained_models = TrainedModelController(
            self.store, self.supervisor, settings.data_dir / "modelconfig"
        )
        self.controller = Controller(
            self.store,
            self.supervisor,
            self.gateway,
            self.scaler,
            settings.domain,
            replica_hooks=[self.trained_models.replica_spec],
        )
        self.isvc_controller = InferenceServiceController(
            self.store, settings.domain, routes_changed=self.gateway.set_isvc_routes
        )
        self.graph_controller = InferenceGraphController(self.store, settings.domain)
        self.broker = BrokerPlane(
            self.store,
            settings.data_dir,
            settings.host,
            settings.broker_port,
            proxy,
            settings.domain,
        )
        token = settings.token
        if token is None and settings.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(
                f"binding the control API to {settings.host} needs --token (a bearer token)"
            )
        app = create_app(self.store, token)
        self.samples = SampleRing()  # the dashboard's recent traffic
        broker = self.broker
        app.routes[:0] = [
            *metrics_routes(
                {
                    "autoscaler": [PlaneCollector(self.scaler, self.supervisor, self.gateway)],
                    "activator": [GatewayCollector(self.gateway, self._service_of)],
                    "broker": [
                        BrokerCollector(broker.ingress, broker.controller, broker.dispatcher)
                    ],
                    "supervisor": [TemplateCollector(self.launcher.templates)],
                }
            ),
            targets_route(self.store, self.supervisor, f"{settings.host}:{settings.api_port}"),
            *dashboard_routes(self.store, self._replicas, self.samples),
        ]
        self.api = EmbeddedServer(
            uvicorn.Config(
                app, host=settings.host, port=settings.api_port, log_level="warning", lifespan="off"
            )
        )

    def _service_of(self, namespace: str, revision: str) -> tuple[str, str]:
        """A revision's Service and Configuration names, from its labels (for metrics)."""
        found = self.store.find(REVISION, namespace, revision) or {}
        labels = (found.get("metadata") or {}).get("labels") or {}
        return labels.get(SERVICE_LABEL, ""), labels.get(CONFIGURATION_LABEL, "")

    def _replicas(self, namespace: str, revision: str) -> tuple[int, int]:
        """A revision's (desired, ready) replicas, as the supervisor has them."""
        status = self.supervisor.status(namespace, revision)
        return status.desired, status.ready

    def _readings(self) -> dict[str, Reading]:
        """Every revision's counters now, for the dashboard's samples."""
        readings = {}
        for state in self.gateway.throttlers():
            if (state.namespace, state.name) == (INGRESS_NAMESPACE, INGRESS_NAME):
                continue  # the plane's own broker ingress, not a user's revision
            desired, ready = self._replicas(state.namespace, state.name)
            tallies = state.requests.values()
            readings[f"{state.namespace}/{state.name}"] = Reading(
                state.requests_total,
                sum(t.count for t in tallies),
                sum(t.sum_ms for t in tallies),
                desired,
                ready,
            )
        return readings

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        api_sockets = self._claim_ports()  # before anything starts, so a taken port leaves nothing
        tasks: list[asyncio.Task[None]] = []
        api_task = broker_task = None
        try:
            await self.launcher.stop_stale()  # what a crashed plane on this data dir left running
            await self.gateway.start(s.host, s.port)
            self.launcher.warm_up()
            api_task = asyncio.create_task(self.api.serve(api_sockets), name="control-api")
            broker_task = asyncio.create_task(self.broker.run(stop), name="broker")
            for name, work in (
                ("isvc-controller", self.isvc_controller.run()),
                ("graph-controller", self.graph_controller.run()),
                ("controller", self.controller.run()),
                ("trainedmodel-controller", self.trained_models.run()),
                ("multiscaler", self.scaler.run()),
                ("dashboard-sampler", run_sampler(self.samples, self._readings)),
            ):
                tasks.append(asyncio.create_task(work, name=name))
            if s.example:
                from knserve.knative.kserve.example import serve_example

                tasks.append(
                    asyncio.create_task(
                        serve_example(
                            self.store, f"http://{s.host}:{s.port}", s.domain, s.data_dir
                        ),
                        name="example",
                    )
                )
            (s.data_dir / "plane.json").write_text(
                json.dumps(
                    {
                        "api": f"http://{s.host}:{s.api_port}",
                        "gateway": f"http://{s.host}:{s.port}",
                        "broker": self.broker.url,
                        "pid": os.getpid(),
                    }
                )
            )
            log.info(
                "knserve plane: gateway http://%s:%d, control API http://%s:%d, data in %s",
                s.host,
                s.port,
                s.host,
                s.api_port,
                s.data_dir,
            )
            print(
                f"knserve is up: gateway http://{s.host}:{s.port}  control API http://{s.host}:{s.api_port}",
                flush=True,
            )
            print(
                f"dashboard: http://{s.host}:{s.api_port}/dashboard (or `knserve dashboard`)",
                flush=True,
            )
            await stop.wait()
        finally:
            log.info("knserve plane: stopping (draining events, then replicas)")
            stop.set()  # when something failed: the broker stops on it too
            if broker_task is not None:
                await broker_task  # deliveries need the gateway until it has stopped
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.scaler.close()
            await self.gateway.close()
            await self.supervisor.close()
            if api_task is not None:
                self.api.should_exit = True
                await api_task
            for sock in api_sockets:
                sock.close()
            await asyncio.to_thread(flush_all)  # the spans of the last requests
            self.store.close()
            (s.data_dir / "plane.json").unlink(missing_ok=True)

    def _claim_ports(self) -> list[socket.socket]:
        """Check that every port the plane serves on is free; the control API's sockets, bound."""
        s = self.settings
        for sock in listen(s.host, s.port, "--port"):
            sock.close()  # the gateway binds it itself, next
        api = listen(s.host, s.api_port, "--api-port")
        try:
            for sock in listen(s.host, s.broker_port, "--broker-port"):
                sock.close()  # uvicorn binds it, when the broker starts
        except PortUnavailable:
            for sock in api:
                sock.close()
            raise
        return api


class PortUnavailable(Exception):
    """A port the plane serves on cannot be bound; the message names the flag that changes it."""

    def __init__(self, port: int, flag: str, error: OSError) -> None:
        taken = error.errno == errno.EADDRINUSE
        reason = "is in use" if taken else f"cannot be bound here ({error.strerror or error})"
        super().__init__(f"port {port} {reason}; choose another with {flag}")


def listen(host: str, port: int, flag: str) -> list[socket.socket]:
    """Sockets listening on every address of `host` at `port`, bound as asyncio's create_server
    binds them (SO_REUSEADDR; IPv6 only on IPv6), or PortUnavailable naming `flag`."""
    sockets: list[socket.socket] = []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(2048)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise PortUnavailable(port, flag, exc) from None
    return sockets


def run_plane(settings: PlaneSettings) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Plane(settings).run(stop)

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
