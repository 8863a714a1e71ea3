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
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import replace

from knserve.runtime.repository import build_model
from knserve.runtime.server import made, parser, run, runtime_options, settings_from_args
from knserve.runtime.settings import RuntimeSettings, settings_from_env


def _per_replica(settings: RuntimeSettings) -> RuntimeSettings:
    """The settings with what differs between one revision's replicas (the port) left out."""
    return replace(settings, port=0, models=())


def preload(argv: Sequence[str]) -> Callable[[], None] | None:
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
    start = made(replace(settings, models=()), models)
    options = runtime_options(args)

    def serve_forked() -> None:
        # the environment the plane gave this replica, without parsing the arguments again
        own = settings_from_env(None, models=settings.models, **options)
        try:
            if _per_replica(own) == _per_replica(settings):
                start(own.port)
            else:
                run(replace(own, models=()), models)
        except KeyboardInterrupt:
            pass
        sys.exit(0)

    return serve_forked
