"""Running the model server: command-line arguments and uvicorn.

`python -m knserve.runtime --model-name iris --model-dir ./model` serves one model;
`--model-repository DIR` serves one model per sub-folder; `--model-config models.json` (or
`$KNSERVE_MODEL_CONFIG`) serves the TrainedModels of KServe's multi-model config, with which an
empty `--model_dir` (a multi-model runtime's `/mnt/models`) names no model of its own, as KServe's
servers then start with none (runtime/model_config.py). KServe's spellings (`--model_name`,
`--model_dir`, `--http_port`, `--storage_uri`) are accepted so existing manifests and scripts work.
The port comes from `--http-port`, else `$PORT` (Knative's contract), else 8080.

A model the server was started with (`--model-dir`, or a `Model` handed to `serve`) that fails
to load stops it with exit status 1, its reason as the last line on stderr
(`knserve.runtime: model iris failed to load: …`), as KServe's model server exits: on Knative
the crashed container's last words become the Revision's message and the InferenceService's
`modelStatus.lastFailureInfo`. A model of a `--model-repository` folder that fails is reported
(503, the repository index) while the others go on serving; so is a TrainedModel.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from knserve.runtime.app import create_app
from knserve.runtime.logformat import configure_logging
from knserve.runtime.model import Model
from knserve.runtime.settings import ModelSpec, RuntimeSettings, settings_from_env


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m knserve.runtime",
        description="Serve models over KServe's V1, the V2 Open Inference Protocol and CloudEvents.",
    )
    p.add_argument("--model-name", "--model_name", dest="model_name")
    p.add_argument(
        "--model-dir",
        "--model_dir",
        "--storage-uri",
        "--storage_uri",
        dest="model_dir",
        help="folder, file:// or http(s):// URI of the model",
    )
    p.add_argument(
        "--model-format",
        "--model_format",
        # KServe's predictiveserver names the format so (`--framework={{.Annotations.modelFormat}}`)
        "--framework",
        dest="model_format",
        help="sklearn, xgboost, lightgbm, onnx, pytorch or custom (detected when absent)",
    )
    p.add_argument(
        "--kserve-model",
        dest="kserve_model",
        help="a KServe SDK model file (model.py calling kserve.ModelServer().start([...])) to host "
        "unedited; the other arguments are also the file's (knserve.runtime.kserve_host)",
    )
    p.add_argument(
        "--model-repository",
        "--model_repository",
        dest="model_repository",
        help="serve one model per sub-folder of this folder",
    )
    p.add_argument(
        "--model-config",
        dest="model_config",
        help="KServe's multi-model config (models.json): load its models (also $KNSERVE_MODEL_CONFIG)",
    )
    p.add_argument("--http-port", "--http_port", dest="port", type=int)
    p.add_argument(
        "--grpc-port",
        "--grpc_port",
        dest="grpc_port",
        type=int,
        help="serve the V2 protocol over gRPC on this port too (KServe's is 8081; on the plane "
        "it is served when the container declares 8081)",
    )
    p.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    p.add_argument(
        "--offload",
        choices=["auto", "always", "never"],
        help="where a synchronous predict runs (default auto: measured per model)",
    )
    p.add_argument("--max-batch-size", "--max_batch_size", dest="max_batch_size", type=int)
    p.add_argument("--max-latency-ms", "--max_latency_ms", dest="max_latency_ms", type=float)
    p.add_argument("--cache-entries", dest="cache_entries", type=int)
    p.add_argument("--cache-ttl", dest="cache_ttl_s", type=float)
    p.add_argument("--logger-url", dest="logger_url")
    p.add_argument("--logger-mode", dest="logger_mode", choices=["all", "request", "response"])
    p.add_argument(
        "--log-level", dest="log_level", choices=["critical", "error", "warning", "info", "debug"]
    )
    p.add_argument(
        "--log-format", dest="log_format", choices=["text", "json"], help="json: one object a line"
    )
    return p


def _model_dir(given: str) -> str:
    """`--model_dir`, or `$STORAGE_URI` when it is KServe's /mnt/models and nothing filled it:
    on Knative without KServe's webhook no storage initializer ran, so the server fetches the
    model itself (knserve's operator gives the URI as KServe's custom containers name theirs)."""
    uri = os.environ.get("STORAGE_URI")
    if given == "/mnt/models" and uri and uri != given and not Path(given).exists():
        return uri
    return given


def settings_from_args(argv: Sequence[str] | None = None) -> RuntimeSettings:
    # KServe passes extra flags to its servers (--workers, --predictor_host …); ignore what we
    # do not know rather than refusing to start, as KServe's own servers do.
    args, unknown = parser().parse_known_args(argv)
    if unknown:
        logging.getLogger(__name__).info("ignoring arguments: %s", " ".join(unknown))
    models: tuple[ModelSpec, ...] = ()
    model_config = args.model_config or os.environ.get("KNSERVE_MODEL_CONFIG") or None
    if args.model_dir and not (model_config and _no_model_in(args.model_dir)):
        if not args.model_name:
            parser().error("--model-dir needs --model-name (the name clients call the model by)")
        models = (ModelSpec(args.model_name, _model_dir(args.model_dir), args.model_format),)
    elif not args.model_repository and not model_config:
        parser().error("give --model-name and --model-dir, --model-repository, or --kserve-model")
    try:
        return settings_from_env(
            None, models=models, model_config=model_config, **runtime_options(args)
        )
    except (ValueError, FileNotFoundError) as exc:
        parser().error(str(exc))
        raise  # unreachable: error() exits


def _no_model_in(model_dir: str) -> bool:
    """Whether `--model_dir` names a local folder with no model file: a multi-model server's
    `/mnt/models`, which KServe's servers then serve as a model repository (its TrainedModels
    come from the model config), as they do when `model.load()` finds nothing there."""
    if "://" in model_dir:
        return False
    folder = Path(model_dir)
    return not folder.exists() or (
        folder.is_dir() and not any(p.is_file() for p in folder.iterdir())
    )


def runtime_options(args: argparse.Namespace) -> dict[str, object]:
    """The `RuntimeSettings` the parsed flags set, models aside."""
    return dict(
        model_repository=args.model_repository,
        port=args.port,
        grpc_port=args.grpc_port,
        host=args.host,
        offload=args.offload,
        max_batch_size=args.max_batch_size,
        max_latency_ms=args.max_latency_ms,
        cache_entries=args.cache_entries,
        cache_ttl_s=args.cache_ttl_s,
        logger_url=args.logger_url,
        logger_mode=args.logger_mode,
        log_level=args.log_level,
        log_format=args.log_format,
    )


def run(settings: RuntimeSettings, models: Sequence[Model] = ()) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn drains in-flight requests); exit with status 1 when a
    model it was started with fails to load (module docstring)."""
    made(settings, models)(settings.port)


def made(settings: RuntimeSettings, models: Sequence[Model] = ()) -> Made:
    """The server `run` starts, made (logging, the app, uvicorn's config) but not started: call
    it with the port to serve on. A warm template (knserve.runtime.warm) makes it once and
    starts it in each replica it forks."""
    import uvicorn

    json_logs = configure_logging(settings.log_level, settings.log_format) == "json"
    app = create_app(settings, list(models))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # a log line per request costs more than the request (KServe's default)
        log_level=settings.log_level,
        # JSON lines: uvicorn's own records go through the root logger's JSON handler too.
        log_config=None if json_logs else uvicorn.config.LOGGING_CONFIG,
        timeout_keep_alive=75,  # longer than common proxies' idle timeouts, so they close first
    )
    config.load()  # here, so a warm template has done it for each replica it forks
    return Made(settings, app, config)


class _Started:
    """A lifespan whose startup ran already (`Made.serve_ahead`): uvicorn's server skips it."""

    def __init__(self, lifespan: Any) -> None:
        self.lifespan = lifespan
        self.state = lifespan.state
        self.should_exit = lifespan.should_exit

    async def startup(self) -> None:
        pass

    async def shutdown(self) -> None:
        await self.lifespan.shutdown()


class Made:
    """A made server (see `made`): `made(port)` serves on `port`; `serve_ahead` starts it before
    it knows its port."""

    def __init__(self, settings: RuntimeSettings, app: Any, config: Any) -> None:
        import uvicorn

        self.settings = settings
        self.app = app
        self.config = config
        self.server = uvicorn.Server(config)
        self.failures: list[str] = []
        app.on_load_failure = self._give_up

    def _give_up(self, found: list[str]) -> None:
        self.failures.extend(found)
        self.server.should_exit = True  # drains as on SIGTERM, then the reason is said last

    def __call__(self, port: int) -> None:
        self._announce(port)
        try:
            self.server.run()
        except SystemExit:  # uvicorn's exit 3 when startup (the model's load) failed
            if not self.failures:
                raise
        self._said()

    def serve_ahead(self, prepare: Callable[[], int | None]) -> bool:
        """Start the server short of listening (its lifespan: the models' startup, each model's
        predict thread), then call `prepare` (it may block: nothing is served yet), which gives
        the port to serve on, or None to serve nothing (False is returned). A warm template's
        spare replica runs this ahead of being asked for, so its request finds it all done."""
        config = self.config
        lifespan = config.lifespan_class(config)

        async def ahead() -> bool:
            await lifespan.startup()
            if not lifespan.should_exit:
                self.app.repository.start_threads()
                await self._rehearse(lifespan)
            port = prepare()
            if port is None:
                await lifespan.shutdown()
                return False
            if lifespan.should_exit:  # as uvicorn's own startup exits, once this is the replica
                self._said()
                sys.exit(3)
            config.lifespan_class = lambda _config: _Started(lifespan)
            self._announce(port)
            await self.server.serve()
            self._said()
            return True

        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            return runner.run(ahead())

    async def _rehearse(self, lifespan: Any) -> None:
        """One request (`GET /v2/health/ready`, which no metric counts) through uvicorn's HTTP
        protocol and the app, on a socket pair no one else holds: the pages a request writes
        (copy-on-write, shared with the template) are copied now rather than on the first
        request the replica serves."""
        config, loop = self.config, asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        await loop.connect_accepted_socket(
            lambda: config.http_protocol_class(
                config=config,
                server_state=self.server.server_state,
                app_state=lifespan.state,
                _loop=loop,
            ),
            theirs,
        )
        reader, writer = await asyncio.open_connection(sock=ours)
        writer.write(
            b"GET /v2/health/ready HTTP/1.1\r\nhost: rehearsal\r\nconnection: close\r\n\r\n"
        )
        await reader.read()  # until the server closes it
        writer.close()

    def _announce(self, port: int) -> None:
        self.config.port = port
        print(f"knserve.runtime serving on http://{self.settings.host}:{port}", flush=True)

    def _said(self) -> None:
        if self.failures:
            for line in self.failures:
                print(f"knserve.runtime: {line}", file=sys.stderr, flush=True)
            sys.exit(1)


def serve(
    models: Sequence[Model], host: str = "127.0.0.1", port: int | None = None, **options: object
) -> None:
    """Serve `Model` objects (the Python API): `serve([MyModel("iris")])`.

    The port is `port`, else `$PORT`, else 8080; `options` are any `RuntimeSettings` fields.
    """
    settings = settings_from_env(None, host=host, port=port, **options)
    run(settings, models)


def main(argv: Sequence[str] | None = None) -> None:
    if parser().parse_known_args(argv)[0].kserve_model:
        from knserve.runtime.kserve_host import main as host_kserve_file

        host_kserve_file(argv)
        return
    settings = settings_from_args(argv)
    try:
        run(settings)
    except KeyboardInterrupt:
        pass
    sys.exit(0)
