"""The model server as a warm template holds it: models loaded, server made, not yet listening.

The plane keeps a template per revision (knserve.knative.supervisor.templates): a process forked
from its zygote that calls `preload` with the replica's arguments, then forks each replica of
the revision, which calls what `preload` returned. So a replica's start is its fork, its port and
its listen: the arguments are parsed, the models loaded, the logging configured, the app and
uvicorn's config made, once, in the template, and the replica shares those pages with it.

A replica reads its settings from its own environment again (`$PORT` first); should any other
setting differ from the template's (the template was made with the revision's first replica's
environment, so only a changed plane could do that), it makes its server afresh, from the models
the template loaded.

The replica a template forks ahead of need (its spare) goes further before it is asked for
(`WarmServer.ahead`): it runs the server's startup and starts each model's predict thread, all
but listening, so the request that wakes it only has to bind its port.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

from knserve.runtime.model import Model
from knserve.runtime.repository import build_model
from knserve.runtime.server import made, parser, run, runtime_options, settings_from_args
from knserve.runtime.settings import RuntimeSettings, settings_from_env


def _per_replica(settings: RuntimeSettings) -> RuntimeSettings:
    """The settings with what differs between one revision's replicas (the port) left out."""
    return replace(settings, port=0, models=())


class WarmServer:
    """What a template's replica runs: the server `preload` made, on the replica's port."""

    def __init__(
        self, settings: RuntimeSettings, models: list[Model], options: dict[str, object]
    ) -> None:
        self.settings = settings
        self.models = models
        self.options = options
        self.made = made(replace(settings, models=()), models)

    def _own(self) -> RuntimeSettings:
        # the environment the plane gave this replica, without parsing the arguments again
        return settings_from_env(None, models=self.settings.models, **self.options)

    def __call__(self) -> None:
        """Serve, in a replica forked on request."""
        own = self._own()
        try:
            if _per_replica(own) == _per_replica(self.settings):
                self.made(own.port)
            else:
                run(replace(own, models=()), self.models)
        except KeyboardInterrupt:
            pass
        sys.exit(0)

    def ahead(self, become: Callable[[], None]) -> None:
        """Serve, in the spare replica a template forks ahead: everything short of listening
        now (the lifespan, the predict threads), then `become` (it blocks until the plane asks
        for a replica and makes this process that replica), then listen on its port. Nothing
        listens before: the spare takes no traffic, and no probe passes, until it is asked for."""
        own: list[RuntimeSettings] = []

        def prepare() -> int | None:
            become()
            own.append(self._own())
            return own[0].port if _per_replica(own[0]) == _per_replica(self.settings) else None

        try:
            if not self.made.serve_ahead(prepare):
                run(replace(own[0], models=()), self.models)
        except KeyboardInterrupt:
            pass
        sys.exit(0)


def preload(argv: Sequence[str]) -> WarmServer | None:
    """Load the models `argv` starts the server with and make the server, now; return what
    starts it in a replica forked later. None when `argv` does not serve just its given models
    (a repository, a model config, a KServe SDK file, gRPC): such a server is not held warm."""
    args = parser().parse_known_args(argv)[0]
    if args.kserve_model:
        return None
    settings = settings_from_args(argv)
    if settings.model_repository or settings.model_config or not settings.models:
        return None
    if settings.grpc_port is not None:
        return None
    models = [build_model(spec) for spec in settings.models]
    return WarmServer(settings, models, runtime_options(args))
